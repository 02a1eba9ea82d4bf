"""Store records -> the rows and texts the pages show. Pure: no Panel, no store, plain asserts test it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flyte_lab.presentation.formats import (
    cached_text,
    format_duration,
    format_resources,
    format_time,
    format_usage,
    notebook_name,
    parse_time,
    run_duration,
)
from flyte_lab.run_progress import progress
from flyte_lab.statuses import RUN_LIVE, TaskStatus

STATUS_COLORS: dict[str, str] = {
    TaskStatus.QUEUED: "#bdc3c7", TaskStatus.RUNNING: "#3498db", TaskStatus.SUCCEEDED: "#27ae60",
    TaskStatus.CACHED: "#16a085", TaskStatus.FAILED: "#c0392b", TaskStatus.SKIPPED: "#95a5a6",
    TaskStatus.CANCELLED: "#e67e22",
}
STATUS_COLORS[TaskStatus.REUSED] = "#8e44ad"  # an earlier run's outputs (a partial run)
RUN_COLUMNS = ["run", "notebook", "status", "start", "duration", "tasks done", "tasks failed", "schedule"]
TASK_COLUMNS = ["task", "status", "attempts", "duration", "cached", "resources", "used", "cell"]


def run_link(run_id: str) -> str:
    return f"./run?id={run_id}"


def run_row(summary: Mapping[str, Any], now: datetime, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One line of the runs table, from a `RunStore.run_summaries` element (`sizes`: element counts of its map-over
    tasks, `run_progress.summary_sizes`)."""
    tasks = summary.get("tasks") or {}
    done, total = progress(tasks, sizes)
    return {
        "run": summary["run_id"],
        "notebook": notebook_name(summary.get("notebook")),
        "status": summary.get("status"),
        "start": format_time(summary.get("started_at") or summary.get("created_at")),
        "duration": format_duration(run_duration(summary, now if summary.get("status") in RUN_LIVE else None)),
        "tasks done": f"{done}/{total}" if tasks else "-",
        "tasks failed": sum(t.get("status") == TaskStatus.FAILED for t in tasks.values()),
        "schedule": summary.get("schedule") or "",
    }


def notebook_labels(paths: Sequence[str]) -> dict[str, str]:
    """label -> stored path for the notebook filter: the file name, or the whole path where names collide."""
    names = [notebook_name(p) for p in paths]
    uses = Counter(names)
    return {(name if uses[name] == 1 else path): path for name, path in zip(names, paths, strict=True)}


def page_slice(total: int, page: int, size: int) -> tuple[int, int, int]:
    """(first index, end index, last page number) of 1-based `page`, clamped into range."""
    pages = max(1, -(-total // size))
    page = min(max(page, 1), pages)
    return (page - 1) * size, min(page * size, total), pages


def task_rows(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, task in (run.get("tasks") or {}).items():
        rows.append({
            "task": name,
            "status": task.get("status"),
            "attempts": task.get("attempts", 0),
            "duration": format_duration(task.get("duration_s")),
            "cached": cached_text(task, no=""),
            "resources": format_resources(task.get("resources")),
            "used": format_usage(task.get("usage")),
            "cell": task.get("cell"),
        })
    return rows


def attempt_bars(run: Mapping[str, Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """Every attempt as a Gantt bar: start, end (now while it runs), lane (its worker), task and status.

    An attempt with no finish time in a run that ended (a row an older version's cancel left open) ends with its
    run: only a live run's attempts stretch to now."""
    now = now or datetime.now(UTC)
    live = run.get("status") in RUN_LIVE
    bars = []
    for task, attempts in (run.get("attempts_detail") or {}).items():
        for attempt in attempts:
            start = parse_time(attempt.get("started_at"))
            if start is None:
                continue
            end = parse_time(attempt.get("finished_at")) or (now if live else parse_time(run.get("finished_at")))
            end = end or start
            bars.append({
                "task": task,
                "attempt": attempt.get("number"),
                "worker": attempt.get("worker") or "local",
                "status": attempt.get("status") or TaskStatus.RUNNING,
                "start": start.replace(tzinfo=None),
                "end": max(end, start).replace(tzinfo=None),
                "duration": format_duration((end - start).total_seconds()),
                "label": f"{task} #{attempt.get('number')}",
            })
    return sorted(bars, key=lambda b: (b["start"], b["task"]))


def task_inputs(graph: Mapping[str, Any], run: Mapping[str, Any], task: str) -> list[dict[str, str]]:
    """What `task` received: each input's source (an upstream task's output, or a workflow input) and preview."""
    spec = next((t for t in graph.get("tasks", []) if t["name"] == task), None)
    if spec is None:
        return []
    sources = {name: src for src, dst, name in graph.get("edges", []) if dst == task}
    tasks = run.get("tasks") or {}
    params = run.get("params") or {}
    defaults = graph.get("workflow_inputs") or {}
    rows = []
    for name, type_text in (spec.get("inputs") or {}).items():
        if name in sources:
            out = (tasks.get(sources[name]) or {}).get("outputs", {}).get(name) or {}
            origin, preview = f"output of {sources[name]}", out.get("preview") or "(not produced)"
        elif name in params:
            origin, preview = "workflow input (-p)", repr(params[name])
        else:
            origin = "workflow input (default)"
            preview = repr((defaults.get(name) or {}).get("default"))
        rows.append({"name": name, "type": type_text, "from": origin, "preview": preview})
    return rows


def task_outputs(run: Mapping[str, Any], task: str) -> list[dict[str, str]]:
    outputs = ((run.get("tasks") or {}).get(task) or {}).get("outputs") or {}
    return [{"name": n, "type": o.get("type") or "", "preview": o.get("preview") or "", "uri": o.get("uri") or ""}
            for n, o in outputs.items()]


def error_text(error: Mapping[str, Any] | None) -> str:
    """`ZeroDivisionError: float division by zero (cell 5, line 3)`, or "" when there is none."""
    if not error:
        return ""
    where = ", ".join(f"{k} {error[k]}" for k in ("cell", "line") if error.get(k) is not None)
    text = f"{error.get('type') or 'Error'}: {error.get('message') or ''}".rstrip(": ")
    return f"{text} ({where})" if where else text


def debug_command(run_id: str, task: str) -> str:
    return f"flyte-lab debug {run_id} {task}"


def run_summary(run: Mapping[str, Any], now: datetime | None = None) -> str:
    """The one header line of a run page."""
    now = now or datetime.now(UTC)
    tasks = run.get("tasks") or {}
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task.get("status") or "-"] = counts.get(task.get("status") or "-", 0) + 1
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    live = run.get("status") in RUN_LIVE
    return (f"{notebook_name(run.get('notebook'))} · started {format_time(run.get('started_at'))} · "
            f"{format_duration(run_duration(run, now if live else None))} · {len(tasks)} tasks ({shown or 'none'})")


def failed_tasks(run: Mapping[str, Any]) -> Sequence[str]:
    return [name for name, t in (run.get("tasks") or {}).items() if t.get("status") == TaskStatus.FAILED]
