"""`flyte-lab run` and `flyte-lab resume`: the run id first, live progress, then a summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flyte_lab.graph.params import split_params


class _Progress:
    """A rich progress bar on a terminal; plain status lines otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.total = total
        self.last: dict[str, str] = {}
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True)
            self.bar_task = self.bar.add_task("running", total=total)
            self.bar.start()

    def update(self, status: dict[str, str]) -> None:
        done = sum(s in ("succeeded", "failed", "cached", "skipped") for s in status.values())
        if self.bar is not None:
            running = ", ".join(t for t, s in status.items() if s == "running")
            self.bar.update(self.bar_task, completed=done, description=running or "running")
        elif not self.quiet:
            for task, state in status.items():
                if self.last.get(task) != state and state != "queued":
                    print(f"  {task}: {state}", file=sys.stderr, flush=True)
        self.last = dict(status)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    from flyte_lab.engine.api import run_notebook

    params = split_params(args.param)
    notifier = _notifier(getattr(args, "notify", []))
    progress: _Progress | None = None

    def created(run_id: str) -> None:
        nonlocal progress
        if not args.json:
            print(f"run {run_id}", flush=True)
        progress = _Progress(0, quiet=args.json)

    def changed(status: dict[str, str]) -> None:
        if progress is not None:
            progress.total = len(status)
            progress.update(status)

    try:
        record = run_notebook(args.notebook, params, cluster=args.cluster, workers=args.workers,
                              use_cache=not args.no_cache, on_created=created, on_change=changed,
                              on_finished=notifier)
    finally:
        if progress is not None:
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
    progress = _Progress(0, quiet=args.json)
    try:
        record = resume_run(args.run_id, cluster=args.cluster, workers=args.workers, on_change=progress.update)
    finally:
        progress.close()
    return _finish(record, args.json)


def _finish(record: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps({k: record[k] for k in ("run_id", "notebook", "status", "params", "created_at",
                                                 "started_at", "finished_at", "tasks")}, indent=2))
    else:
        print(summary(record))
    return 0 if record["status"] == "succeeded" else 1


def summary(record: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for task in record["tasks"].values():
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    lines = [f"run {record['run_id']} {record['status']}: "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    for name, task in record["tasks"].items():
        error = task.get("error")
        if task["status"] == "failed" and error:
            where = f"cell {error.get('cell')}, line {error.get('line')}" if error.get("cell") else "infrastructure"
            lines.append(f"  task `{name}` failed at {where}: {error.get('type')}: {error.get('message')}")
            if task.get("output_notebook"):
                lines.append(f"    executed notebook: {task['output_notebook']}")
    notebooks = {Path(t["output_notebook"]).parent.parent for t in record["tasks"].values() if t.get("output_notebook")}
    if notebooks:
        lines.append(f"executed notebooks: {sorted(notebooks)[0]}")
    lines.append(f"details: flyte-lab show {record['run_id']}   outputs: flyte-lab outputs {record['run_id']}")
    return "\n".join(lines)
