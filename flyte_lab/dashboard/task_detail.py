"""One task of a run in detail: inputs, outputs, error and traceback (all escaped), where a reused task's outputs
come from (a link to that run's page), each attempt's executed notebook as HTML in a sandboxed frame
(`notebook_view`), and the "Relaunch from this task" button (the page acts on it); the part shows the task its
`RunState` names, as its run record has it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote

import panel as pn
import param

from flyte_lab.dashboard.common import html
from flyte_lab.dashboard.notebook_view import render
from flyte_lab.dashboard.run_state import RunPart, RunState
from flyte_lab.dashboard.table_rows import debug_command, error_text, run_link, task_inputs, task_outputs
from flyte_lab.statuses import TaskStatus

PICKER_LIST_MAX = 100

_lock = threading.Lock()
_rendered: dict[str, str] = {}  # finished attempts' notebooks never change: render each once


def notebook_html(url: str, final: bool) -> str:
    """The executed notebook at `url` (a path or any fsspec URL) as HTML, or a one-line reason it cannot be shown."""
    with _lock:
        if url in _rendered:
            return _rendered[url]
    import fsspec
    import nbformat

    try:
        with fsspec.open(url, "r", encoding="utf-8") as handle:
            nb = nbformat.read(handle, as_version=4)
        frame = render(nb, f"executed notebook {url}")
    except (OSError, ValueError) as exc:
        return f'<p class="flyte-missing">executed notebook {escape(url)} cannot be read: {escape(str(exc))}</p>'
    html = f'<div class="flyte-notebook">{frame}</div>'
    if final:
        with _lock:
            _rendered[url] = html
    return html


def _table(rows: list[dict[str, str]], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p><i>{escape(empty)}</i></p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td><code>{escape(str(r.get(c, '')))}</code></td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<table class="flyte-io"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def reused_html(source: Mapping[str, Any] | None) -> str:
    """`reused from run X (attempt N)`, X a link to that run's page; "" for a task this run computed."""
    if not source:
        return ""
    run_id = str(source.get("run_id"))
    changed = ", its code changed since (--allow-changed)" if source.get("changed") else ""
    return (f'<p class="flyte-reused-from">reused from run <a class="flyte-reused-link" '
            f'href="{escape(run_link(quote(run_id)))}">{escape(run_id)}</a> '
            f"(attempt {escape(str(source.get('attempt')))}{escape(changed)})</p>")


def summary_html(graph: Mapping[str, Any], run: Mapping[str, Any], task: str) -> str:
    """Inputs, outputs, where a reused task's outputs come from, error with traceback and the `debug` command of
    `task`."""
    info = (run.get("tasks") or {}).get(task) or {}
    parts = [f'<h3 class="flyte-task-title">{escape(task)} <small>({escape(str(info.get("status")))}, '
             f'cell {escape(str(info.get("cell")))})</small></h3>', reused_html(info.get("reused_from")),
             "<h4>inputs</h4>", _table(task_inputs(graph, run, task), ["name", "type", "from", "preview"],
                                       "no inputs"),
             "<h4>outputs</h4>", _table(task_outputs(run, task), ["name", "type", "preview", "uri"],
                                        "no outputs recorded")]
    error = info.get("error")
    if info.get("status") == TaskStatus.CANCELLED:  # stopped by a cancel: nobody's error, nothing to reproduce
        said = str((error or {}).get("message") or "cancelled")
        parts.append(f'<p class="flyte-cancelled" style="color:#ca6f1e">{escape(said)}</p>')
    elif error:
        parts += [f'<h4>error</h4><p class="flyte-error" style="color:#c0392b"><b>{escape(error_text(error))}</b></p>',
                  f'<pre class="flyte-traceback">{escape(error.get("traceback") or "")}</pre>',
                  "<p>reproduce it with its inputs: "
                  f'<code class="flyte-debug">{escape(debug_command(run["run_id"], task))}</code></p>']
    return "\n".join(parts)


def attempts(run: Mapping[str, Any], task: str) -> list[dict[str, Any]]:
    """The task's attempts that left an executed notebook, newest first."""
    found = [a for a in ((run.get("attempts_detail") or {}).get(task) or []) if a.get("output_notebook")]
    return sorted(found, key=lambda a: -int(a.get("number") or 0))


def task_picker(names: list[str], value: str | None) -> pn.widgets.Select | pn.widgets.AutocompleteInput:
    """A list of the tasks; for a big run, a box that completes task names (a Select builds every option up
    front: 0.3 s of Chromium's time for 1,000 tasks)."""
    if len(names) <= PICKER_LIST_MAX:
        return pn.widgets.Select(label="task", options=names, value=value, width=240)
    return pn.widgets.AutocompleteInput(label="task (type to find)", options=names, value=value or "", restrict=True,
                                        min_characters=1, case_sensitive=False, search_strategy="includes",
                                        width=240)


class TaskDetail(RunPart):
    """The task picker, the attempt picker, "Relaunch from this task", the task's summary and the chosen attempt's
    executed notebook."""

    def __init__(self, state: RunState) -> None:
        super().__init__(state)
        self.picker = task_picker(state.task_names, state.task)
        self.attempt = pn.widgets.Select(label="executed notebook of attempt", options=[], width=240)
        # a new run of this task and everything downstream of it (`--from TASK`); the run page wires it
        self.relaunch_from = pn.widgets.Button(label="Relaunch from this task", width=190, align="end",
                                               disabled=state.task is None)
        self.summary = html("")
        self.notebook = html("")
        self.picker.param.watch(lambda event: state.select(event.new), "value")
        self.attempt.param.watch(lambda _e: self._show_notebook(), "value")
        self._layout = pn.Column(pn.Row(self.picker, self.attempt, self.relaunch_from), self.summary,
                                 html("<h4>executed notebook</h4>"), self.notebook, sizing_mode="stretch_width")
        self._show_task()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @param.depends("state.run", "state.task", watch=True)
    def _show_task(self) -> None:
        run, task = self.state.run, self.state.task
        if not run["tasks"]:
            self.summary.object = "<p><i>this run has no tasks</i></p>"
            return
        if task is None:
            return
        self.picker.value = task
        self.summary.object = summary_html(self.state.graph, run, task)
        found = attempts(run, task)
        options = {f"attempt {a['number']} ({a['status']})": a["output_notebook"] for a in found}
        if self.attempt.options != options:
            self.attempt.options = options
            self.attempt.value = next(iter(options.values()), None)
        self._show_notebook()

    def _show_notebook(self) -> None:
        url = self.attempt.value
        if not url:
            source = ((self.state.run.get("tasks") or {}).get(self.state.task or "") or {}).get("reused_from")
            self.notebook.object = ("<p><i>no executed notebook yet</i></p>" if not source else
                                    f"<p><i>reused: its executed notebook is on the page of run "
                                    f"{escape(str(source.get('run_id')))}</i></p>")
            return
        final = any(a["output_notebook"] == url and a["status"] != TaskStatus.RUNNING
                    for a in attempts(self.state.run, self.state.task or ""))
        self.notebook.object = notebook_html(url, final)
