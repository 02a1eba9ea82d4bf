"""`flyte-lab logs RUN_ID [TASK] [--follow]`: what a run's tasks printed, as they print it.

Reads the live output the driver stores (`store/task_output.py`). Without TASK every task's lines come
interleaved in the order they were stored, each prefixed by its source (`fit | …`, `fit#2` for a second attempt,
`sq[3]` for a map-over element), as `docker compose logs` does. `--follow` polls the store until the run (or the
task) has ended and its last lines are read. Each attempt keeps its newest `KEEP_LINES` lines in the store; when
earlier ones were dropped, a first line says so and where the whole output is: the executed notebook.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from flyte_lab.errors import UserInputError
from flyte_lab.presentation.formats import attempt_label
from flyte_lab.statuses import RUN_TERMINAL, TASK_TERMINAL
from flyte_lab.store import RunStore
from flyte_lab.store.task_output import KEEP_LINES, READ_LIMIT

POLL_S = 0.5


def logs(args: argparse.Namespace) -> int:
    with RunStore.open_existing(args.run_id) as store:
        run_id = store.run_record(args.run_id)["run_id"]
        tasks = store.run_tasks(run_id)
        if args.task is not None and args.task not in tasks:
            raise UserInputError(f"run {run_id} has no task `{args.task}`; its tasks: {', '.join(tasks)}",
                                 run_id=run_id, task=args.task)
        since, told = 0, False
        width = max(len(t) for t in tasks) if tasks else 0
        while True:
            # the state first: lines stored before it said "ended" are all read by the pass below
            ended = _ended(store, run_id, args.task)
            page = store.task_output(run_id, args.task, since=since)
            if page["dropped"] and not told:
                told = True
                print(f"(earlier lines of {', '.join(page['dropped'])} are not kept: each attempt keeps its last "
                      f"{KEEP_LINES}; its executed notebook has them all)", file=sys.stderr)
            for line in page["lines"]:
                print(_shown(line, None if args.task is not None else width))
            sys.stdout.flush()
            since = page["next"]
            if len(page["lines"]) >= READ_LIMIT:
                continue  # more waiting: read on before sleeping
            if not args.follow or ended:
                return 0
            time.sleep(POLL_S)


def _ended(store: RunStore, run_id: str, task: str | None) -> bool:
    if store.run_record(run_id)["status"] in RUN_TERMINAL:
        return True
    return task is not None and store.run_tasks(run_id)[task]["status"] in TASK_TERMINAL


def _shown(line: dict[str, Any], width: int | None) -> str:
    if width is None:
        return str(line["text"])
    label = attempt_label(line["task"], line["attempt"], line["element"])
    return f"{label:<{width}} | {line['text']}"
