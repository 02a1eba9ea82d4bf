"""`flyte-lab run`, `resume` and `cancel`: the run id first, live progress, then a summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from flyte_lab.graph.params import split_params
from flyte_lab.presentation.formats import cancel_line
from flyte_lab.statuses import RUN_LIVE, RUN_TERMINAL, CancelSource, RunStatus, TaskStatus

if TYPE_CHECKING:
    from flyte_lab.store import RunStore


class _Progress:
    """A rich progress bar on a terminal (finished/all tasks, map-over elements counted); plain
    status lines otherwise. Retries and other notes are printed as lines in both cases."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last: dict[str, str] = {}
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True, console=Console(stderr=True))
            self.bar_task = self.bar.add_task("starting", total=None)
            self.bar.start()

    def update(self, progress: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.bar_task, completed=progress.done, total=progress.total,
                            description=", ".join(progress.running) or "running")
        elif not self.quiet:
            for task, state in progress.status.items():
                if self.last.get(task) != state and state != TaskStatus.QUEUED:
                    print(f"  {task}: {state}", file=sys.stderr, flush=True)
        self.last = dict(progress.status)

    def note(self, text: str) -> None:
        # notes (retries, resume decisions) go to stderr even with --json: stdout stays one JSON document
        if self.bar is not None:
            self.bar.console.print(f"  {text}")
        else:
            print(f"  {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.graph.selection import launch_options

    partial = launch_options(args)
    params = split_params(args.param)
    notifier = _notifier(getattr(args, "notify", []))
    progress = _Progress(quiet=args.json)
    run_id = ""

    def created(new_id: str) -> None:
        nonlocal run_id
        run_id = new_id
        if not args.json:
            print(f"run {new_id}", flush=True)

    try:
        record = run_notebook(args.notebook, params, cluster=args.cluster, workers=args.workers,
                              use_cache=not args.no_cache, shared_fs=args.shared_fs, on_created=created,
                              on_change=progress.update, on_event=progress.note,
                              on_finished=notifier, allow_env_mismatch=args.allow_env_mismatch, **partial)
    except KeyboardInterrupt:
        progress.close()
        print(f"flyte-lab: interrupted; run {run_id} cancelled", file=sys.stderr)
        return 130
    finally:
        progress.close()
    return _finish(record, args.json)


def _notifier(specs: list[str]) -> Any:
    """`--notify EVENT=URL` targets, checked before the run starts (a bad one is exit 2)."""
    if not specs:
        return None
    from flyte_lab.scheduler.notify import Notifier, parse_targets

    return Notifier(parse_targets(specs))


def resume(args: argparse.Namespace) -> int:
    from flyte_lab.engine.api import resume_run

    if not args.json:
        print(f"resuming run {args.run_id}", flush=True)
    progress = _Progress(quiet=args.json)
    try:
        record = resume_run(args.run_id, cluster=args.cluster, workers=args.workers, shared_fs=args.shared_fs,
                            on_change=progress.update, on_event=progress.note)
    except KeyboardInterrupt:
        progress.close()
        print(f"flyte-lab: interrupted; run {args.run_id} cancelled", file=sys.stderr)
        return 130
    finally:
        progress.close()
    return _finish(record, args.json)


def cancel(args: argparse.Namespace) -> int:
    from flyte_lab.store import RunStore

    with RunStore.from_env(create=False) as store:  # one store for the request and the wait after it
        return _cancel(args, store)


def _cancel(args: argparse.Namespace, store: RunStore) -> int:
    from flyte_lab.engine.api import cancel_run, get_run

    run_id, outcome = cancel_run(args.run_id, store, by=CancelSource.COMMAND)
    if outcome in RUN_TERMINAL:
        print(f"run {run_id} already {outcome}; nothing to cancel")
        return 0
    if outcome == "recorded":
        print(f"run {run_id} cancelled (no live driver held it)")
        return 0
    if args.no_wait:
        print(f"run {run_id}: cancel requested")
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = get_run(run_id, store)["status"]
        if status not in RUN_LIVE:
            print(f"run {run_id} {status}")
            return 0
        time.sleep(0.2)
    print(f"run {run_id}: cancel requested; its driver has not stopped yet", file=sys.stderr)
    return 1


def _finish(record: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps({k: record[k] for k in ("run_id", "notebook", "status", "params", "created_at",
                                                 "started_at", "finished_at", "cluster", "tasks", "partial")},
                         indent=2))
    else:
        print(summary(record))
    return 0 if record["status"] == RunStatus.SUCCEEDED else 1


def summary(record: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for task in record["tasks"].values():
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    lines = [f"run {record['run_id']} {record['status']}: "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    run_error = record.get("error")
    if record["status"] == RunStatus.FAILED and run_error and run_error.get("type") == "DriverError":
        lines.append(f"  {run_error.get('message')}")
    cancelled = cancel_line(record)
    if cancelled:
        lines.append(f"  {cancelled}")
    for name, task in record["tasks"].items():
        error = task.get("error")
        if task["status"] == TaskStatus.FAILED and error:
            where = f"cell {error.get('cell')}, line {error.get('line')}" if error.get("cell") else "infrastructure"
            lines.append(f"  task `{name}` failed at {where}: {error.get('type')}: {error.get('message')}")
            if task.get("output_notebook"):
                lines.append(f"    executed notebook: {task['output_notebook']}")
            if error.get("cell") and error.get("type") not in ("Cancelled", "TaskTimeout"):
                lines.append(f"    reproduce it: flyte-lab debug {record['run_id']} {name}   "
                             f"(in Jupyter: %flyte_debug {record['run_id']} {name})")
    # the run's folder of executed notebooks: RUN/TASK/attempt-N.ipynb (a path or any fsspec URL)
    notebooks = {t["output_notebook"].rsplit("/", 2)[0] for t in record["tasks"].values()
                 if t.get("output_notebook") and not t.get("reused_from")}  # a reused task's are its source run's
    if notebooks:
        lines.append(f"executed notebooks: {sorted(notebooks)[0]}")
    lines.append(f"details: flyte-lab show {record['run_id']}   outputs: flyte-lab outputs {record['run_id']}")
    return "\n".join(lines)
