"""The one vocabulary of run and task states, and the sets every reader and writer of them uses.

The values are exactly the strings the run store keeps and the CLI, JSON and REST API serve (DESIGN.md 3):
a `StrEnum` member *is* its string, so it is stored, compared and dumped as before. The CLI and the kernel
import this module, so it imports nothing but `enum`. The sidebar gets the same sets from `GET
/flyte-lab/api/config` (`vocabulary()`), so the TypeScript side keeps no copy.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"  # its outputs came from the task cache: a success that ran nothing
    SKIPPED = "skipped"  # never ran: something upstream failed, or the run was cancelled first
    REUSED = "reused"  # not selected in a partial run: its outputs are an earlier run's (`graph/selection.py`)


RUN_LIVE: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
RUN_TERMINAL: frozenset[RunStatus] = frozenset(set(RunStatus) - RUN_LIVE)
RUN_RESUMABLE: frozenset[RunStatus] = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})

TASK_LIVE: frozenset[TaskStatus] = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
TASK_TERMINAL: frozenset[TaskStatus] = frozenset(set(TaskStatus) - TASK_LIVE)
# finished successfully: its outputs exist, so downstream tasks may run, a resume may reuse it, progress counts it
TASK_DONE: frozenset[TaskStatus] = frozenset({TaskStatus.SUCCEEDED, TaskStatus.CACHED, TaskStatus.REUSED})


def vocabulary() -> dict[str, dict[str, list[str]]]:
    """Every state and set as JSON, for clients that cannot import this module (the sidebar)."""
    return {
        "run": {"all": list(RunStatus), "live": sorted(RUN_LIVE), "terminal": sorted(RUN_TERMINAL),
                "resumable": sorted(RUN_RESUMABLE)},
        "task": {"all": list(TaskStatus), "live": sorted(TASK_LIVE), "terminal": sorted(TASK_TERMINAL),
                 "done": sorted(TASK_DONE)},
    }
