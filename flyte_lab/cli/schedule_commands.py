"""`flyte-lab schedule add|list|pause|resume|remove` and `flyte-lab scheduler`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, get_args, get_origin

from flyte_lab.errors import UserInputError
from flyte_lab.graph.params import split_params
from flyte_lab.store import RunStore


def add_arguments(schedule: argparse.ArgumentParser) -> None:
    """The `schedule` sub-commands (`add`'s options are defined when it is asked for: they import pydantic)."""
    ssub = schedule.add_subparsers(dest="schedule_command", required=True, parser_class=type(schedule))
    ssub.add_parser("add", help="add a schedule (checked first: nothing is stored if it is refused)",
                    argument_default=argparse.SUPPRESS, build="flyte_lab.cli.schedule_commands:spec_arguments")
    p = ssub.add_parser("list", help="schedules, next fire times, last runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.schedule_commands:list_")
    for verb, text in (("pause", "stop firing"), ("resume", "fire again, from now"), ("remove", "delete")):
        p = ssub.add_parser(verb, help=f"{text} a schedule")
        p.add_argument("name")
        p.set_defaults(handler=f"flyte_lab.cli.schedule_commands:{verb}")


def spec_arguments(p: argparse.ArgumentParser) -> None:
    """`schedule add`'s options: one per field of the schedule spec, described by it. Only the options given
    reach the spec, as typed: it fills in the defaults and judges the values (exactly one of `--cron` and
    `--every` too), as it does the REST body's."""
    from flyte_lab.scheduler.spec import ScheduleSpec, argument

    for field, info in ScheduleSpec.model_fields.items():
        kind: dict[str, Any] = {"help": ScheduleSpec.help_text(field)}
        if info.annotation is bool:
            kind["action"] = "store_true"
        elif get_origin(info.annotation) is dict:  # -p NAME=VALUE, split below
            kind.update(action="append", metavar="NAME=VALUE")
        elif get_origin(info.annotation) is list:
            kind.update(action="append", metavar="EVENT=URL")
        elif info.annotation is int:
            kind["metavar"] = "N"
        elif get_args(info.annotation) and all(isinstance(a, str) for a in get_args(info.annotation)):
            kind["metavar"] = "|".join(get_args(info.annotation))  # a choice
        if field == "path":
            p.add_argument("path", metavar="notebook", **kind)
        elif field == "params":
            p.add_argument("-p", "--param", dest="params", **kind)
        else:
            p.add_argument(argument(field), dest=field, **kind)
    p.set_defaults(handler="flyte_lab.cli.schedule_commands:add")


def add(args: argparse.Namespace) -> int:
    from flyte_lab.presentation.formats import format_fire_time
    from flyte_lab.scheduler import overview
    from flyte_lab.scheduler.spec import ScheduleSpec

    given = {k: v for k, v in vars(args).items() if k in ScheduleSpec.model_fields}
    if "params" in given:
        given["params"] = split_params(given["params"])
    spec = ScheduleSpec.parse(given)
    row = spec.row()
    with RunStore.from_env() as store:
        store.add_schedule(dict(row))
        schedule = store.get_schedule(row["name"])
    nxt = overview.next_fire_time(schedule, datetime.now(UTC))
    when = f"cron `{schedule['cron']}`" if schedule["cron"] else f"every {spec.every}"
    print(f"schedule {schedule['name']} added: {schedule['notebook']}, {when} in {schedule['timezone']}; "
          f"next fire {format_fire_time(nxt, schedule['timezone'])}")
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

    table = Table("name", "when", "timezone", "next fire", "last run", "state", "notebook")
    for row in rows:
        last = row["last_run"]
        table.add_row(row["name"], describe(row), str(row["timezone"]), next_fire(row),
                      f"{last['run_id']} {last['status']}" if last else "-", status(row), row["notebook"])
    report.make_console().print(table)
    return 0


def next_fire(row: dict[str, Any]) -> str:
    """The row's next fire time in its own timezone; `-` when it has none (paused, or a row that is invalid)."""
    if row["next_fire_time"] is None:
        return "-"
    from flyte_lab.presentation.formats import format_fire_time

    return format_fire_time(row["next_fire_time"], str(row["timezone"]))


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
    from flyte_lab.scheduler import firing_log, timing
    from flyte_lab.scheduler.loop import Scheduler

    if args.now and not args.once:
        raise UserInputError("--now needs --once: a long-running scheduler follows the clock")
    now = timing.parse_time(args.now, what="--now") if args.now else None
    firing_log.configure()
    with RunStore.from_env() as store:
        sched = Scheduler(store)
        return sched.run_once(now) if args.once else sched.run_forever()
