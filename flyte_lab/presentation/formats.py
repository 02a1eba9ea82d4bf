"""The one text form of times, durations, resources, parameters, notebook names, a task's error line and the source
of an output line, for the CLI's tables, the run widget (in a kernel) and the dashboard. Pure and stdlib only: no
store, no terminal, no clock unless asked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from flyte_lab.statuses import CancelSource, RunStatus, TaskStatus


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 string from the store as an aware UTC datetime (None stays None)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_time(value: str | None) -> str:
    """`2025-01-01 12:00:00` (UTC, to the second) or `-`."""
    parsed = parse_time(value)
    return "-" if parsed is None else parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_fire_time(value: datetime | str | None, timezone: str) -> str:
    """A schedule's fire time as its reader thinks of it: `Wed 2 Dec, 17:06 CET`, the wall time in the schedule's
    `timezone` (an IANA name) with the zone's abbreviation (seconds only when not zero), or `-`."""
    parsed = parse_time(value) if isinstance(value, str | None) else value
    if parsed is None:
        return "-"
    local = (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(ZoneInfo(timezone))
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    return f"{local:%a} {local.day} {local:%b}, {clock} {local.tzname()}"


def format_duration(seconds: float | None) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `2h03m`, or `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_duration(run: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds from start (else creation) to finish, to `now` for a live run if `now` is given, less the time
    it sat ended before a resume reopened it (`idle_s`): the sum of its active spans."""
    start = parse_time(run.get("started_at")) or parse_time(run.get("created_at"))
    end = parse_time(run.get("finished_at")) or now
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() - (run.get("idle_s") or 0.0))


def format_params(params: Mapping[str, Any] | None) -> str:
    if not params:
        return "-"
    return " ".join(f"{k}={v!r}" for k, v in params.items())


def format_resources(resources: Mapping[str, Any] | None) -> str:
    if not resources:
        return "-"
    return " ".join(f"{k}={v}" for k, v in resources.items())


def format_bytes(value: float) -> str:
    """`312MiB`, `1.4GiB` (binary units, as --mem is written)."""
    if value >= 2**30:
        return f"{value / 2**30:.1f}GiB"
    return f"{value / 2**20:.0f}MiB"


def format_usage(usage: Mapping[str, Any] | None) -> str:
    """What an attempt's kernel used: `peak 312MiB, 4.1 cpu-s`, or `-` when it was not measured."""
    if not usage:
        return "-"
    return f"peak {format_bytes(usage['peak_rss_bytes'])}, {usage['cpu_s']:.1f} cpu-s"


def sizing_hints(tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Right-sizing hints from what each task used against what it asked (`--mem`, `--cpu`): a request four
    times what it used or more, or CPU used beyond the request (only tasks that ran at least a second count)."""
    from flyte_lab.graph.header import memory_bytes

    hints = []
    for name, task in tasks.items():
        usage, asked = task.get("usage"), task.get("resources") or {}
        if not usage:
            continue
        mem, peak = asked.get("mem"), usage["peak_rss_bytes"]
        if mem and peak and memory_bytes(str(mem)) >= 4 * peak:
            hints.append(f"task `{name}` asked --mem {mem} and peaked at {format_bytes(peak)}: "
                         f"--mem {_mem_option(peak * 1.5)} would do")
        wall, cpu = task.get("duration_s"), asked.get("cpu")
        if cpu and wall and wall >= 1 and usage["cpu_s"] / wall > float(cpu) * 1.25:
            hints.append(f"task `{name}` used {usage['cpu_s'] / wall:.1f} CPUs on average but asked --cpu {cpu}: "
                         "ask for more, or its neighbours on the worker are slowed")
    return hints


def _mem_option(value: float) -> str:
    """A `--mem` value at least `value`: whole 64Mi steps, in Gi from 1Gi on."""
    mib = -(-int(value) // (64 * 2**20)) * 64
    return f"{mib / 1024:g}Gi" if mib >= 1024 else f"{mib}Mi"


def notebook_name(path: str | None) -> str:
    """The notebook's file name (the full path stays in `--json` and in `show`)."""
    return PurePath(path).name if path else "-"


def cancel_line(run: Mapping[str, Any]) -> str | None:
    """Who cancelled a cancelled run (`cancelled from the JupyterLab sidebar`); None for any other run. A run
    cancelled before `cancelled_by` was recorded says only `cancelled`."""
    if run.get("status") != RunStatus.CANCELLED:
        return None
    by = run.get("cancelled_by")
    return CancelSource(by).phrase if by in set(CancelSource) else "cancelled"


def task_error_line(name: str, task: Mapping[str, Any]) -> str:
    """`task `fit` failed at cell 7, line 3: ValueError: bad lr` (parts left out when unknown)."""
    error = task.get("error") or {}
    cell = error.get("cell", task.get("cell"))
    where = ""
    if cell is not None:
        where = f" at cell {cell}"
        if error.get("line") is not None:
            where += f", line {error['line']}"
    kind, message = error.get("type"), error.get("message")
    what = ": ".join(str(p) for p in (kind, message) if p) or "no error recorded"
    return f"task `{name}` failed{where}: {what}"


def cached_text(task: Mapping[str, Any], no: str = "no") -> str:
    """A tasks table's `cached` cell: `yes` for a cache hit, `from RUN` for a partial run's reused task (the run
    that computed its outputs), else `no`."""
    source = task.get("reused_from")
    if source:
        return f"from {source.get('run_id')}"
    return "yes" if task.get("status") == TaskStatus.CACHED else no


def attempt_label(task: str, attempt: int, element: int | None) -> str:
    """How a line's source is named when several are shown together: `fit`, `fit#2` (its second attempt),
    `fit[3]` (map-over element 3)."""
    label = task + (f"[{element}]" if element is not None and element >= 0 else "")
    return label + (f"#{attempt}" if attempt > 1 else "")
