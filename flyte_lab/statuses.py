"""The one vocabulary of run and task states, the sets every reader and writer of them uses, and who may
cancel a run.

The values are exactly the strings the run store keeps and the CLI, JSON and REST API serve (DESIGN.md 3):
a `StrEnum` member *is* its string, so it is stored, compared and dumped as before. The CLI and the kernel
import this module, so it imports nothing but `enum` and `typing`. The sidebar gets the same sets from `GET
/flyte-lab/api/config` (`vocabulary()`), so the TypeScript side keeps no copy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


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
    CANCELLED = "cancelled"  # it was running when its run was cancelled (an attempt's status too): nobody's error
    REUSED = "reused"  # not selected in a partial run: its outputs are an earlier run's (`graph/selection.py`)


class CancelSource(StrEnum):
    """Who cancelled a run: stored with it (`cancelled_by`) and said on the tasks the cancel stopped."""

    COMMAND = "command"  # `flyte-lab cancel`
    INTERRUPT = "interrupt"  # Ctrl-C in `flyte-lab run`/`resume`, or interrupting the kernel of a `%flyte_run`
    SIDEBAR = "sidebar"
    WIDGET = "widget"
    DASHBOARD = "dashboard"
    REST = "rest"  # the REST route called by something other than the sidebar
    API = "api"  # `flyte_lab.cancel_run` called from Python

    @property
    def phrase(self) -> str:
        """How the tasks it stopped say it: `cancelled from the JupyterLab sidebar`."""
        return _CANCEL_PHRASES[self]


_CANCEL_PHRASES: dict[CancelSource, str] = {
    CancelSource.COMMAND: "cancelled by `flyte-lab cancel`",
    CancelSource.INTERRUPT: "cancelled by an interrupt (Ctrl-C)",
    CancelSource.SIDEBAR: "cancelled from the JupyterLab sidebar",
    CancelSource.WIDGET: "cancelled from the run widget",
    CancelSource.DASHBOARD: "cancelled from the dashboard",
    CancelSource.REST: "cancelled through the REST API",
    CancelSource.API: "cancelled through the Python API (`cancel_run`)",
}


RUN_LIVE: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
RUN_TERMINAL: frozenset[RunStatus] = frozenset(set(RunStatus) - RUN_LIVE)
RUN_RESUMABLE: frozenset[RunStatus] = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})

TASK_LIVE: frozenset[TaskStatus] = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
TASK_TERMINAL: frozenset[TaskStatus] = frozenset(set(TaskStatus) - TASK_LIVE)
# finished successfully: its outputs exist, so downstream tasks may run, a resume may reuse it, progress counts it
TASK_DONE: frozenset[TaskStatus] = frozenset({TaskStatus.SUCCEEDED, TaskStatus.CACHED, TaskStatus.REUSED})


def vocabulary() -> dict[str, dict[str, Any]]:
    """Every state and set as JSON, for clients that cannot import this module (the sidebar), and how each
    `cancelled_by` reads."""
    return {
        "cancelled_by": {source.value: source.phrase for source in CancelSource},
        "run": {"all": list(RunStatus), "live": sorted(RUN_LIVE), "terminal": sorted(RUN_TERMINAL),
                "resumable": sorted(RUN_RESUMABLE)},
        "task": {"all": list(TaskStatus), "live": sorted(TASK_LIVE), "terminal": sorted(TASK_TERMINAL),
                 "done": sorted(TASK_DONE)},
    }
