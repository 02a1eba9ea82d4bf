"""The CLI's renderers of run-store data: dicts in (the `runs`/`show --json` shapes), rich renderables or text out.

Pure: nothing here reads the store, the clock (unless asked) or the terminal. The formats the dashboard and the
widget share with it are `presentation.formats`'.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from flyte_lab.presentation.formats import (
    cached_text,
    cancel_line,
    format_duration,
    format_params,
    format_resources,
    format_time,
    format_usage,
    notebook_name,
    run_duration,
    sizing_hints,
    task_error_line,
)
from flyte_lab.statuses import RUN_LIVE, TaskStatus

STATUS_STYLES: dict[str, str] = {
    TaskStatus.SUCCEEDED: "green",
    TaskStatus.CACHED: "cyan",
    TaskStatus.FAILED: "bold red",
    TaskStatus.RUNNING: "yellow",
    TaskStatus.QUEUED: "blue",
    TaskStatus.SKIPPED: "magenta",
    TaskStatus.CANCELLED: "magenta",
    TaskStatus.REUSED: "dark_cyan",  # an earlier run's outputs (a partial run)
}

# Wide enough that piped output (grep, logs) keeps one line per row instead of wrapping at 80.
PLAIN_WIDTH = 200


# -- small formatters -----------------------------------------------------------


def status_text(status: str | None) -> Text:
    """The status word, coloured (colour is dropped by a console without a terminal)."""
    word = status or "-"
    return Text(word, style=STATUS_STYLES.get(word, ""))


# -- `runs` ---------------------------------------------------------------------


def runs_table(runs: Iterable[Mapping[str, Any]], now: datetime | None = None) -> Table:
    """One row per run (a `runs --json` element): id, status, notebook file name, created, duration.

    One line per run, 100 columns wide at most: a long file name is clipped with an ellipsis.
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("run id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("notebook", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    for run in runs:
        notebook = notebook_name(run.get("notebook"))
        if run.get("schedule"):
            notebook += f"  [{run['schedule']}]"  # plain text cell: brackets are not markup here
        table.add_row(
            str(run["run_id"]),
            status_text(run.get("status")),
            Text(notebook),
            format_time(run.get("created_at")),
            format_duration(run_duration(run, now)),
        )
    return table


# -- `show` ---------------------------------------------------------------------


def run_header(run: Mapping[str, Any], now: datetime | None = None) -> Table:
    """Run id, notebook, status, params and times, as aligned `key value` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("run", Text(str(run["run_id"])))
    grid.add_row("notebook", Text(str(run.get("notebook") or "-")))
    grid.add_row("status", status_text(run.get("status")))
    grid.add_row("params", Text(format_params(run.get("params"))))
    if run.get("cluster"):
        grid.add_row("cluster", Text(str(run["cluster"])))
    if run.get("partial"):
        grid.add_row("selection", Text(partial_text(run["partial"])))
    if run.get("schedule"):
        grid.add_row("schedule'", Text(f"{run['schedule']} at {format_time(run.get('scheduled_time'))}"))
    grid.add_row("created", format_time(run.get("created_at")))
    grid.add_row("started", format_time(run.get("started_at")))
    grid.add_row("finished", format_time(run.get("finished_at")))
    grid.add_row("duration", format_duration(run_duration(run, now)))
    return grid


def tasks_table(tasks: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per task of a `show --json` object, in graph order."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("task", no_wrap=True)
    table.add_column("cell", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("cached")
    table.add_column("resources")
    table.add_column("used")
    for name, task in tasks.items():
        cell = task.get("cell")
        table.add_row(
            Text(name),
            "-" if cell is None else str(cell),
            status_text(task.get("status")),
            str(task.get("attempts", 0)),
            format_duration(task.get("duration_s")),
            cached_text(task),
            Text(format_resources(task.get("resources"))),
            Text(format_usage(task.get("usage"))),
        )
    return table


SCALE_REASONS = {"waiting_tasks": "tasks waiting", "idle_timeout": "idle timeout", "min_workers": "min_workers"}


def scale_table(events: Iterable[Mapping[str, Any]]) -> Table:
    """The worker-group scale events of a `k8s` run (the per-profile autoscaler's decisions), oldest first."""
    table = Table(title="worker groups scaled", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
    table.add_column("time", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("workers", no_wrap=True)
    table.add_column("reason")
    for event in events:
        reason = SCALE_REASONS.get(str(event.get("reason")), str(event.get("reason")))
        if event.get("reason") == "waiting_tasks":
            reason += f" ({event.get('waiting')})"
        table.add_row(format_time(event.get("at")), Text(str(event.get("group"))),
                      f"{event.get('from')} -> {event.get('to')}", reason)
    return table


def task_error(name: str, task: Mapping[str, Any]) -> Group:
    """A failed task's one-line error, its traceback and where its executed notebook is."""
    parts: list[RenderableType] = [Text(task_error_line(name, task), style="bold red")]
    traceback = (task.get("error") or {}).get("traceback")
    if traceback:
        parts.append(Text(str(traceback).rstrip("\n")))
    if task.get("output_notebook"):
        parts.append(Text(f"executed notebook: {task['output_notebook']}"))
    return Group(*parts)


def run_error_line(run: Mapping[str, Any]) -> str | None:
    """The run's own error (driver or infrastructure, not a task's), if one was recorded."""
    error = run.get("error")
    if not error:
        return None
    if isinstance(error, Mapping):
        text = ": ".join(str(p) for p in (error.get("type"), error.get("message")) if p)
        return f"run error: {text or error}"
    return f"run error: {error}"


def run_report(run: Mapping[str, Any], now: datetime | None = None) -> Group:
    """Everything `flyte-lab show` prints for one `show --json` object."""
    parts: list[RenderableType] = [run_header(run, now), Text("")]
    tasks = run.get("tasks") or {}
    parts.append(tasks_table(tasks) if tasks else Text("no tasks"))
    if run.get("scale_events"):
        parts.extend([Text(""), scale_table(run["scale_events"])])
    for note in run.get("notes") or ():
        parts.extend([Text(""), Text(f"note: {note}", style="yellow")])
    for hint in sizing_hints(tasks) if run.get("status") not in RUN_LIVE else ():
        parts.extend([Text(""), Text(f"hint: {hint}", style="cyan")])
    for name, task in tasks.items():
        if task.get("reused_from"):
            parts.extend([Text(""), Text(f"reused: {name} {source_text(task['reused_from'])}")])
    for name, task in tasks.items():
        if task.get("status") == TaskStatus.FAILED:
            parts.extend([Text(""), task_error(name, task)])
    cancelled = cancel_line(run)  # a cancelled task is nobody's error: the run says who stopped it, once
    if cancelled:
        parts.extend([Text(""), Text(cancelled, style="magenta")])
    line = run_error_line(run)
    if line:
        parts.extend([Text(""), Text(line, style="bold red")])
    return Group(*parts)


def partial_text(partial: Mapping[str, Any]) -> str:
    """A partial run's options as typed: `--from c`, `--only c --reuse RUN --allow-changed`."""
    select = partial.get("select") or {}
    parts = [f"--only {','.join(select['only'])}"] if select.get("only") else []
    parts += [f"--{key} {select[key]}" for key in ("from", "to") if select.get(key)]
    parts += [f"--reuse {partial['reuse']}"] if partial.get("reuse") else []
    parts += ["--allow-changed"] if partial.get("allow_changed") else []
    return " ".join(parts)


def source_text(source: Mapping[str, Any]) -> str:
    """Where a reused task's outputs come from: `from run RUN (attempt N)`."""
    changed = ", its code changed since (--allow-changed)" if source.get("changed") else ""
    return f"from run {source.get('run_id')} (attempt {source.get('attempt')}{changed})"


# -- `outputs` ------------------------------------------------------------------


def outputs_table(tasks: Mapping[str, Mapping[str, Any]]) -> Table | None:
    """task / output / type / preview for the `tasks` of a `show --json` object; None if there are none."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("task", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("type")
    table.add_column("preview", overflow="fold")
    reused = any(task.get("reused_from") for task in tasks.values())
    if reused:  # a partial run: which earlier run each reused output is
        table.add_column("from run", no_wrap=True)
    for name, task in tasks.items():
        for out_name, out in (task.get("outputs") or {}).items():
            preview = out.get("preview")
            row = [Text(name), Text(out_name), Text(str(out.get("type") or "-")),
                   Text("-" if preview is None else str(preview))]
            if reused:
                row.append(Text(str((task.get("reused_from") or {}).get("run_id") or "this run")))
            table.add_row(*row)
    return table if table.row_count else None


# -- consoles -------------------------------------------------------------------


def make_console(file: Any = None) -> Console:
    """A console for the CLI: colours on a terminal, plain text and wide lines otherwise."""
    stream = file if file is not None else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(
        file=file,
        highlight=False,  # never colour numbers or paths the user did not ask for
        width=None if is_tty else PLAIN_WIDTH,
        color_system="auto" if is_tty else None,
    )


def render_text(renderable: RenderableType, width: int = 120) -> str:
    """A renderable as plain text (for logs, notifications, tests, non-HTML views)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, force_terminal=False)
    console.print(renderable)
    return buffer.getvalue()
