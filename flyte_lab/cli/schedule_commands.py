"""`flyte-lab schedule add|list|pause|resume|remove` and `flyte-lab scheduler`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from flyte_lab.errors import UserInputError
from flyte_lab.graph.params import split_params
from flyte_lab.store import RunStore


def add(args: argparse.Namespace) -> int:
    from flyte_lab.scheduler import overview, timing
    from flyte_lab.scheduler.spec import ScheduleSpec

    spec = ScheduleSpec(notebook=args.notebook, cron=args.cron, every=args.every, name=args.name,
                        params=split_params(args.param), start=args.start, timezone=args.timezone,
                        catchup=args.catchup, max_catchup=args.max_catchup, max_active=args.max_active,
                        overlap=args.overlap, notify=args.notify)
    row = spec.row()
    with RunStore.from_env() as store:
        store.add_schedule(dict(row))
        schedule = store.get_schedule(row["name"])
    tz = timing.zone(schedule["timezone"])
    nxt = overview.next_fire_time(schedule, datetime.now(UTC))
    when = f"cron `{schedule['cron']}`" if schedule["cron"] else f"every {args.every}"
    print(f"schedule {schedule['name']} added: {schedule['notebook']}, {when} in {schedule['timezone']}; "
          f"next fire {nxt.astimezone(tz).isoformat() if nxt else '-'}")
    return 0


def list_(args: argparse.Namespace) -> int:
    from flyte_lab.scheduler.overview import describe, overview, status

    with RunStore.from_env() as store:
        rows = overview(store, datetime.now(UTC))
    for row in rows:
        for warning in row["warnings"]:
            print(f"flyte-lab: warning: schedule {row['name']}: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no schedules; `flyte-lab schedule add NOTEBOOK --cron \"0 7 * * *\"` adds one")
        return 0
    from rich.table import Table

    from flyte_lab.cli import report

    table = Table("name", "when", "timezone", "next fire (UTC)", "last run", "state", "notebook")
    for row in rows:
        last = row["last_run"]
        table.add_row(row["name"], describe(row), str(row["timezone"]), report.format_time(row["next_fire_time"]),
                      f"{last['run_id']} {last['status']}" if last else "-", status(row), row["notebook"])
    report.make_console().print(table)
    return 0


def pause(args: argparse.Namespace) -> int:
    with RunStore.from_env() as store:
        store.set_schedule_paused(args.name, True)
    print(f"schedule {args.name} paused")
    return 0


def resume(args: argparse.Namespace) -> int:
    with RunStore.from_env() as store:
        store.set_schedule_paused(args.name, False)
    print(f"schedule {args.name} resumed (fire times while it was paused are not caught up)")
    return 0


def remove(args: argparse.Namespace) -> int:
    with RunStore.from_env() as store:
        store.remove_schedule(args.name)
    print(f"schedule {args.name} removed (its runs stay in the store)")
    return 0


def scheduler(args: argparse.Namespace) -> int:
    from flyte_lab.scheduler import timing
    from flyte_lab.scheduler.loop import Scheduler

    if args.now and not args.once:
        raise UserInputError("--now needs --once: a long-running scheduler follows the clock")
    now = timing.parse_time(args.now, what="--now") if args.now else None
    # our own fire-by-fire log at INFO; Dask, alembic and the rest only when they warn
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flyte_lab").setLevel(logging.INFO)
    with RunStore.from_env() as store:
        sched = Scheduler(store)
        return sched.run_once(now) if args.once else sched.run_forever()
