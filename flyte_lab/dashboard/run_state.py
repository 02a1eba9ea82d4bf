"""One run as the run page shows it: the state every part of the page follows (Panel's DataStore pattern).

The page's tick assigns `run` once per reload; the graph, timeline, task table and task detail each depend on
it (and on `task`, the task shown in detail). param compares a new record with the old one, so a tick that
reads an unchanged record notifies no part and nothing is redrawn.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from param.parameters import NoNone

from flyte_lab.dashboard.table_rows import failed_tasks


class RunState(param.Parameterized):
    graph = param.Dict(constant=True, doc="the run's stored graph (a stored graph never changes)")
    run = param.Dict(doc="the run record (`RunStore.get_run`), assigned once per reload")
    task = param.String(default=None, allow_None=True,
                        doc="the task shown in detail; the graph highlights it, the picker names it")

    def __init__(self, graph: dict[str, Any], run: dict[str, Any], **params: Any) -> None:
        names = list(run.get("tasks") or {})
        # a failed run opens on what failed
        params.setdefault("task", (failed_tasks(run) or names or [None])[0])
        super().__init__(graph=graph, run=run, **params)

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])

    @property
    def task_names(self) -> list[str]:
        return list(self.run.get("tasks") or {})

    def select(self, task: str | None) -> None:
        """Show `task` in detail, if this run has it (a picker may hold a name still being typed)."""
        if task in (self.run.get("tasks") or {}):
            self.task = task


class RunPart(pn.viewable.Viewer):
    """A part of the run page: built from `state`, then following it (`param.depends("state.run", watch=True)`)."""

    # NoNone: typed as a RunState, not an Optional one (a part never exists without its state)
    state = param.ClassSelector(class_=RunState, constant=True, allow_None=NoNone)

    def __init__(self, state: RunState) -> None:
        super().__init__(state=state)
