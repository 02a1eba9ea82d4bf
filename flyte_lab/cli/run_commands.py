"""`flyte-lab runs`, `show RUN_ID` and `outputs RUN_ID`: read the run store and print it.

These only read, and create nothing: on a home with no store yet, `runs`
says there are no runs and `show`/`outputs` that the run is not found. An
unknown id is the store's `RunNotFound`, which `main()` turns into one line
and exit code 2. Rendering lives in `report.py` so the
dashboard and the widget draw runs the same way.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from flyte_lab.cli import report
from flyte_lab.errors import NoStore, UserInputError
from flyte_lab.store import RunStore


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _open() -> RunStore | None:
    """The existing run store, or None when there is none yet (nothing is created)."""
    try:
        return RunStore.from_env(create=False)
    except NoStore:
        return None


def runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        # SQLite reads a negative LIMIT as "no limit": refuse rather than surprise
        raise UserInputError(f"--limit must be at least 1, got {args.limit}")
    store = _open()
    if store is None:
        rows = []
    else:
        # stored notebook paths are absolute and resolved, as `run` records them
        notebook = str(Path(args.notebook).resolve()) if args.notebook else None
        with store:
            rows = store.list_runs(limit=args.limit, notebook=notebook, status=args.status)
    if args.json:
        _print_json(rows)
        return 0
    console = report.make_console()
    if not rows:
        filtered = args.notebook or args.status
        console.print(Text("no runs match" if filtered else "no runs yet; `flyte-lab run NOTEBOOK` starts one"))
        return 0
    console.print(report.runs_table(rows, now=datetime.now(UTC)))
    return 0


def show(args: argparse.Namespace) -> int:
    with RunStore.open_existing(args.run_id) as store:
        run = store.get_run(args.run_id)
    if args.json:
        _print_json(run)
        return 0
    report.make_console().print(report.run_report(run, now=datetime.now(UTC)))
    return 0


def outputs(args: argparse.Namespace) -> int:
    with RunStore.open_existing(args.run_id) as store:
        if args.json:
            values = store.run_outputs(args.run_id)
        else:
            run = store.get_run(args.run_id)
    if args.json:
        _print_json(values)
        return 0
    console = report.make_console()
    table = report.outputs_table(run["tasks"])
    if table is None:
        console.print(Text(f"run {run['run_id']} has no outputs recorded (status: {run['status']})"))
    else:
        console.print(table)
    return 0
