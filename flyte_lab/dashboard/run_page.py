"""`/run?id=RUN_ID`: one run's graph, timeline, tasks and per-task detail; live while the run is; its actions.

A periodic callback reads the store: a cheap status probe each tick, the whole record only while the run is
live (or its status just changed), so a finished 1,000-task run costs nothing to keep open.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import quote

import panel as pn

from flyte_lab.dashboard import actions
from flyte_lab.dashboard.common import frame, html, load_extensions, message_page, status_badge
from flyte_lab.dashboard.run_graph import RunGraph
from flyte_lab.dashboard.run_state import RunState
from flyte_lab.dashboard.store_access import StoreProblem, open_store
from flyte_lab.dashboard.table_rows import run_summary
from flyte_lab.dashboard.task_detail import TaskDetail
from flyte_lab.dashboard.task_output import TaskOutput
from flyte_lab.dashboard.task_table import TaskTable
from flyte_lab.dashboard.timeline import Timeline
from flyte_lab.errors import RunNotFound
from flyte_lab.presentation.formats import cancel_line
from flyte_lab.statuses import RUN_LIVE, RUN_RESUMABLE, RunStatus

REFRESH_MS = 1000
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RunPage:
    """The header and actions of one run, and its parts (graph, timeline, tasks, detail), all following `state`."""

    def __init__(self, store: Any, run: dict[str, Any], graph: dict[str, Any]) -> None:
        self.store = store
        self.state = RunState(graph, run)
        self.run_id = self.state.run_id
        self.action: actions.Action | None = None
        self.location = pn.state.location  # this session's browser location (None outside a served page)
        self.cancelling = False  # a cancel was asked of this page: its notice changes when the run ends
        self.header = html("")
        self.cancel = pn.widgets.Button(label="Cancel", color="warning", width=110)
        self.resume = pn.widgets.Button(label="Resume", color="primary", width=110)
        self.relaunch = pn.widgets.Button(label="Relaunch", width=110)
        self.notice = html("")
        self.cancel.on_click(self._cancel)
        self.resume.on_click(lambda _e: self._start("resume"))
        self.relaunch.on_click(lambda _e: self._start("relaunch"))
        self.graph = RunGraph(self.state)
        self.timeline = Timeline(self.state)
        self.tasks = TaskTable(self.state)
        self.detail = TaskDetail(self.state)
        self.output = TaskOutput(self.state, store)
        self.detail.relaunch_from.on_click(lambda _e: self._start("relaunch", from_task=self.state.task))
        self.state.param.watch(lambda _e: self.show_run(), "run")
        self.show_run()

    # -- reading ---------------------------------------------------------------

    def tick(self) -> None:
        if self._went_to_relaunched():
            return
        status = self.store.run_record(self.run_id)["status"]
        pending = self.action is not None and not self.action.done.is_set()
        if status in RUN_LIVE or status != self.state.run["status"] or pending or self.action is not None:
            self.reload()
        self.output.refresh()
        if self.action is not None and self.action.done.is_set():
            self.notice.object = self._notice(self.action.describe())
            self.action = None
            self._buttons()

    def reload(self) -> None:
        """One assignment: every part follows the state (an unchanged record changes nothing)."""
        self.state.run = dict(self.store.get_run(self.run_id))

    # -- showing ---------------------------------------------------------------

    def show_run(self) -> None:
        run = self.state.run
        live = '<span class="flyte-live"> · live</span>' if run["status"] in RUN_LIVE else ""
        error = run.get("error") or {}
        run_error = f'<p style="color:#c0392b">{escape(str(error.get("message")))}</p>' if error else ""
        cancelled = cancel_line(run)
        if cancelled:
            run_error += f'<p class="flyte-cancelled-by" style="color:#ca6f1e">{escape(cancelled)}</p>'
        self.header.object = (f'<h2 class="flyte-run-title">run <code>{escape(self.run_id)}</code> '
                              f'<span class="flyte-run-status">{status_badge(run["status"])}</span>{live}</h2>'
                              f'<p class="flyte-run-summary">{escape(run_summary(run))}<br>'
                              f'notebook <code>{escape(run["notebook"])}</code></p>{run_error}')
        if self.cancelling and run["status"] not in RUN_LIVE:
            self.cancelling = False
            ended = "cancelled" if run["status"] == RunStatus.CANCELLED else \
                f"{run['status']} before the cancel took effect"
            self.notice.object = self._notice(f"run `{self.run_id}` {ended}")
        self._buttons()

    def _buttons(self) -> None:
        busy = self.action is not None and not self.action.done.is_set()
        status = self.state.run["status"]
        self.cancel.disabled = status not in RUN_LIVE
        self.resume.disabled = busy or status not in RUN_RESUMABLE
        self.relaunch.disabled = busy
        self.detail.relaunch_from.disabled = busy or self.state.task is None

    # -- acting ----------------------------------------------------------------

    @staticmethod
    def _notice(text: str) -> str:
        return f'<p class="flyte-notice">{escape(text)}</p>'

    def _cancel(self, _event: Any) -> None:
        try:
            state = actions.cancel(self.run_id)
            self.notice.object = self._notice(f"cancel of `{self.run_id}`: {state}")
            self.cancelling = state in ("requested", "recorded")  # the reload or a later tick shows the run's end
        except RunNotFound as exc:
            self.notice.object = self._notice(exc.message)
        self.reload()

    def _went_to_relaunched(self) -> bool:
        """Once a Relaunch from this page has recorded its run, the page goes to it (the new run is what the user
        asked to see); the old run is one click back."""
        action = self.action
        new = action.new_run_id if action is not None and action.kind == "relaunch" else None
        if action is None or new is None or self.location is None:
            return False
        self.notice.object = self._notice(f"{action.name} of `{self.run_id}` started run `{new}`: opening it")
        self.location.reload = True  # a new page for the new run, not a changed URL over the old one
        self.location.search = f"?id={quote(new)}"
        self.action = None
        return True

    def _start(self, kind: str, from_task: str | None = None) -> None:
        """Resume or Relaunch (`from_task`: of that task and what is downstream of it) in a process of its own."""
        self.action = actions.start(kind, self.run_id, from_task)
        self.notice.object = self._notice(f"{self.action.name} of `{self.run_id}` started")
        self._buttons()

    def view(self) -> pn.viewable.Viewable:
        return frame(
            self.header,
            pn.Row(self.cancel, self.resume, self.relaunch),
            self.notice,
            self.graph,
            self.timeline,
            html("<h3>tasks</h3>"),
            self.tasks,
            self.output,
            self.detail,
            name=f"run {self.run_id}",
        )


def _requested_id() -> str | None:
    values = pn.state.session_args.get("id") if pn.state.session_args else None
    if not values:
        return None
    raw = values[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def run_page(run_id: str | None = None) -> pn.viewable.Viewable:
    load_extensions()
    run_id = run_id if run_id is not None else _requested_id()
    if not run_id:
        return message_page("Which run?", "Open a run from the runs list, or give its id: /run?id=RUN_ID.", "bad-id")
    if not RUN_ID.match(run_id):
        return message_page("Not a run id", f"{run_id[:80]!r} is not a run id (like 20250101-120000-abc123); "
                                             "the runs list links to every run.", "bad-id")
    store = open_store()
    if isinstance(store, StoreProblem):
        return message_page("The run store cannot be read" if store.kind != "empty" else "No runs yet",
                            store.message, store.kind)
    try:
        run = dict(store.get_run(run_id))
        graph = dict(store.get_graph(run["run_id"]))
    except RunNotFound as exc:
        return message_page("Run not found", exc.message, "not-found")
    page = RunPage(store, run, graph)
    pn.state.add_periodic_callback(page.tick, period=REFRESH_MS)
    return page.view()
