"""`/run?id=RUN_ID`: one run's graph, timeline, tasks and per-task detail; live while the run is; its actions.

A periodic callback reads the store: a cheap status probe each tick, the whole record only while the run is
live (or its status just changed), so a finished 1,000-task run costs nothing to keep open.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import pandas as pd
import panel as pn

from flyte_lab.dashboard import actions
from flyte_lab.dashboard.common import CSS, frame, html, load_extensions, message_page, status_badge, status_formatter
from flyte_lab.dashboard.run_graph import RunGraph
from flyte_lab.dashboard.store_access import StoreProblem, open_store
from flyte_lab.dashboard.task_detail import attempts, notebook_html, summary_html
from flyte_lab.dashboard.timeline import Timeline
from flyte_lab.dashboard.views import TASK_COLUMNS, failed_tasks, run_summary, task_rows
from flyte_lab.errors import RunNotFound
from flyte_lab.statuses import RUN_LIVE, RUN_RESUMABLE, TaskStatus

REFRESH_MS = 1000
TASK_ROW_PX = 26
PICKER_LIST_MAX = 100
TASK_PAGE = 25  # rows of the task table sent and drawn at a time (50 cost Chromium ~0.5 s more on 1,000 tasks)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RunPage:
    def __init__(self, store: Any, run: dict[str, Any], graph: dict[str, Any]) -> None:
        self.store = store
        self.run = run
        self.graph = graph
        self.run_id: str = run["run_id"]
        self.action: actions.Action | None = None
        self.header = html("")
        self.cancel = pn.widgets.Button(label="Cancel", color="warning", width=110)
        self.resume = pn.widgets.Button(label="Resume", color="primary", width=110)
        self.relaunch = pn.widgets.Button(label="Relaunch", width=110)
        self.notice = html("")
        self.cancel.on_click(self._cancel)
        self.resume.on_click(lambda _e: self._start("resume"))
        self.relaunch.on_click(lambda _e: self._start("relaunch"))
        self.run_graph = RunGraph(graph, run)
        self.timeline = Timeline(run)
        self.tasks = pn.widgets.Tabulator(
            pd.DataFrame(task_rows(run), columns=TASK_COLUMNS), show_index=False, disabled=True, selectable=1,
            formatters={"status": status_formatter()}, sizing_mode="stretch_width", layout="fit_data_stretch",
            pagination="remote", page_size=TASK_PAGE, stylesheets=[CSS],
            # a known height spares Tabulator measuring itself again on every redraw of a full page
            height=TASK_ROW_PX * TASK_PAGE + 100 if len(run["tasks"]) > TASK_PAGE else None)
        names = list(run["tasks"])
        failed = failed_tasks(run)
        self.task = task_picker(names, (failed or names or [None])[0])
        self.attempt = pn.widgets.Select(label="executed notebook of attempt", options=[], width=240)
        self.detail = html("")
        self.notebook = html("")
        self.tasks.on_click(self._row_clicked)
        self.run_graph.on_select(self._node_clicked)
        self.task.param.watch(lambda _e: self.show_task(), "value")
        self.attempt.param.watch(lambda _e: self.show_notebook(), "value")
        self.show_run()
        self.show_task()

    # -- reading ---------------------------------------------------------------

    def tick(self) -> None:
        status = self.store.run_record(self.run_id)["status"]
        pending = self.action is not None and not self.action.done.is_set()
        if status in RUN_LIVE or status != self.run["status"] or pending or self.action is not None:
            self.reload()
        if self.action is not None and self.action.done.is_set():
            self.notice.object = self._notice(self.action.describe())
            self.action = None
            self._buttons()

    def reload(self) -> None:
        run = dict(self.store.get_run(self.run_id))
        if run == self.run:
            return
        self.run = run
        self.run_graph.update(run)
        self.timeline.update(run)
        self.tasks.value = pd.DataFrame(task_rows(run), columns=TASK_COLUMNS)
        self.show_run()
        self.show_task()

    # -- showing ---------------------------------------------------------------

    def show_run(self) -> None:
        run = self.run
        live = '<span class="flyte-live"> · live</span>' if run["status"] in RUN_LIVE else ""
        error = run.get("error") or {}
        run_error = f'<p style="color:#c0392b">{escape(str(error.get("message")))}</p>' if error else ""
        self.header.object = (f'<h2 class="flyte-run-title">run <code>{escape(self.run_id)}</code> '
                              f'<span class="flyte-run-status">{status_badge(run["status"])}</span>{live}</h2>'
                              f'<p class="flyte-run-summary">{escape(run_summary(run))}<br>'
                              f'notebook <code>{escape(run["notebook"])}</code></p>{run_error}')
        self._buttons()

    def _buttons(self) -> None:
        busy = self.action is not None and not self.action.done.is_set()
        status = self.run["status"]
        self.cancel.disabled = status not in RUN_LIVE
        self.resume.disabled = busy or status not in RUN_RESUMABLE
        self.relaunch.disabled = busy

    def show_task(self) -> None:
        task = self.task.value
        if not self.run["tasks"]:
            self.detail.object = "<p><i>this run has no tasks</i></p>"
            return
        if task not in self.run["tasks"]:  # a name still being typed
            return
        self.run_graph.select(task)
        self.detail.object = summary_html(self.graph, self.run, task)
        found = attempts(self.run, task)
        options = {f"attempt {a['number']} ({a['status']})": a["output_notebook"] for a in found}
        if self.attempt.options != options:
            self.attempt.options = options
            self.attempt.value = next(iter(options.values()), None)
        self.show_notebook()

    def show_notebook(self) -> None:
        url = self.attempt.value
        if not url:
            self.notebook.object = "<p><i>no executed notebook yet</i></p>"
            return
        final = any(a["output_notebook"] == url and a["status"] != TaskStatus.RUNNING
                    for a in attempts(self.run, self.task.value))
        self.notebook.object = notebook_html(url, final)

    def _node_clicked(self, task: str) -> None:
        if task in self.task.options:
            self.task.value = task

    def _row_clicked(self, event: Any) -> None:
        row = event.row
        if row is not None and 0 <= row < len(self.tasks.value):
            self.task.value = self.tasks.value.iloc[row]["task"]

    # -- acting ----------------------------------------------------------------

    @staticmethod
    def _notice(text: str) -> str:
        return f'<p class="flyte-notice">{escape(text)}</p>'

    def _cancel(self, _event: Any) -> None:
        try:
            self.notice.object = self._notice(actions.cancel(self.run_id))
        except RunNotFound as exc:
            self.notice.object = self._notice(exc.message)
        self.reload()

    def _start(self, kind: str) -> None:
        self.action = actions.start(kind, self.run_id)
        self.notice.object = self._notice(f"{kind} of `{self.run_id}` started")
        self._buttons()

    def view(self) -> pn.viewable.Viewable:
        return frame(
            self.header,
            pn.Row(self.cancel, self.resume, self.relaunch),
            self.notice,
            pn.pane.Bokeh(self.run_graph.figure, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.timeline.figure, sizing_mode="stretch_width"),
            html("<h3>tasks</h3>"),
            self.tasks,
            pn.Row(self.task, self.attempt),
            self.detail,
            html("<h4>executed notebook</h4>"),
            self.notebook,
            name=f"run {self.run_id}",
        )


def task_picker(names: list[str], value: str | None) -> pn.widgets.Select | pn.widgets.AutocompleteInput:
    """A list of the tasks; for a big run, a box that completes task names (a Select builds every option up
    front: 0.3 s of Chromium's time for 1,000 tasks)."""
    if len(names) <= PICKER_LIST_MAX:
        return pn.widgets.Select(label="task", options=names, value=value, width=240)
    return pn.widgets.AutocompleteInput(label="task (type to find)", options=names, value=value or "", restrict=True,
                                        min_characters=1, case_sensitive=False, search_strategy="includes",
                                        width=240)


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
