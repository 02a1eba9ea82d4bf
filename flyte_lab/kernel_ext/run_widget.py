"""The live picture of one run in a notebook (an ipywidget), drawn from the run store's records.

`RunWidget.show(run, graph, sizes, output=)` takes the `show --json` object, the
graph stored at launch, the element counts of map-over tasks and the newest
lines its tasks printed (`output_tail`), and sets plain widget values (a
progress bar and HTML), so the notebook keeps the final picture in its saved
widget state. Nothing here reads the store or the
driver: `run_follow` polls the store and calls `show`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from flyte_lab.kernel_ext.output_tail import output_html
from flyte_lab.presentation.formats import (
    cached_text,
    cancel_line,
    format_duration,
    format_resources,
    format_usage,
    run_duration,
    task_error_line,
)
from flyte_lab.presentation.graph_render import STATUS_COLORS, render_svg, workflow_from_graph_json
from flyte_lab.run_progress import progress
from flyte_lab.statuses import RUN_LIVE, RUN_RESUMABLE, RunStatus, TaskStatus

GRAPH_HEIGHT = 480  # px: the graph box's height at most
_BAR_STYLE: dict[str, str] = {RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "danger",
                              RunStatus.CANCELLED: "warning"}


def debug_hint(run_id: str, task: str) -> str:
    return f"%flyte_debug {run_id} {task}"


class RunWidget:
    """Title, progress bar, graph coloured by status, task table, the running and failed tasks' newest output
    lines, and each failure with where it happened."""

    def __init__(self, source_note: str, on_cancel: Callable[[], None] | None = None,
                 on_resume: Callable[[], None] | None = None, on_relaunch: Callable[[], None] | None = None) -> None:
        import ipywidgets as w

        self.source_note = source_note
        self.title = w.HTML(value=f"<b>flyte_lab run</b> · starting · {escape(source_note)}")
        self.bar = w.IntProgress(value=0, min=0, max=1, description="0/?", bar_style="info",
                                 layout=w.Layout(width="60%"))
        self.cancel = w.Button(description="Cancel", button_style="warning" if on_cancel else "",
                               disabled=on_cancel is None, tooltip="cancel this run (kills its running tasks)")
        if on_cancel is not None:
            self.cancel.on_click(lambda _button: on_cancel())
        # enabled once the run ended (`show`): Resume a failed or cancelled run after a fix, Relaunch any
        self.resume = w.Button(description="Resume", disabled=True,
                               tooltip="continue this run with the notebook as it is now (after a fix)")
        self.relaunch = w.Button(description="Relaunch", disabled=True, tooltip="a new run with the same inputs")
        self._can = {"resume": on_resume is not None, "relaunch": on_relaunch is not None}
        if on_resume is not None:
            self.resume.on_click(lambda _button: on_resume())
        if on_relaunch is not None:
            self.relaunch.on_click(lambda _button: on_relaunch())
        self.graph = w.HTML(value="")
        self.table = w.HTML(value="")
        self.output = w.HTML(value="")
        self.failures = w.HTML(value="")
        self.box = w.VBox([self.title, w.HBox([self.bar, self.cancel, self.resume, self.relaunch]), self.graph,
                           self.table, self.output, self.failures])

    def _no_cancel(self) -> None:
        # plain grey when there is nothing to cancel: a disabled "warning" button still looks like an action
        self.cancel.disabled = True
        self.cancel.button_style = ""

    def _ended_actions(self, status: str) -> None:
        self.resume.disabled = not (self._can["resume"] and status in RUN_RESUMABLE)
        self.relaunch.disabled = not self._can["relaunch"] or status in RUN_LIVE

    def following(self, run_id: str | None) -> None:
        """A Resume or Relaunch from this widget started: live again (Cancel offered, the others not)."""
        self.cancel.disabled, self.cancel.button_style = False, "warning"
        self.resume.disabled = self.relaunch.disabled = True
        shown = f' <code class="flyte-run-id">{escape(run_id)}</code>' if run_id else ""
        self.title.value = f"<b>flyte_lab run{shown}</b> · starting · {escape(self.source_note)}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def refused(self, message: str | None) -> None:
        """The launch was refused before a run existed (validation, bad parameters): no run, so no progress bar
        and nothing to cancel. `message` is shown here unless None: the magic raises it below the cell instead
        (said once)."""
        self.title.value = (f'<b>flyte_lab run</b> · <span class="flyte-run-status" data-status="refused" '
                            f'style="color:#c0392b">refused</span> · {escape(self.source_note)}')
        self.failures.value = ("" if message is None else
                               f'<pre class="flyte-refused" style="color:#c0392b">{escape(message)}</pre>')
        for part in (self.bar, self.cancel, self.resume, self.relaunch):  # no run: nothing to act on
            part.layout.display = "none"
        self._no_cancel()

    def show(self, run: Mapping[str, Any], graph: Mapping[str, Any], sizes: Mapping[str, int],
             now: datetime | None = None, output: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        """`output`: each task's newest lines (`output_tail.OutputTails.by_task`)."""
        status = str(run.get("status"))
        tasks: Mapping[str, Mapping[str, Any]] = run.get("tasks") or {}
        done, total = progress(tasks, sizes)
        # max first: a value above the old max would be clipped
        self.bar.max = max(total, 1)
        self.bar.value = done
        self.bar.description = f"{done}/{total}"
        self.bar.bar_style = _BAR_STYLE.get(status, "info")
        if status not in RUN_LIVE:
            self._no_cancel()
        self._ended_actions(status)
        elapsed = format_duration(run_duration(run, now or datetime.now(UTC)))
        self.title.value = (f'<b>flyte_lab run <code class="flyte-run-id">{escape(str(run.get("run_id")))}</code></b>'
                            f' · <span class="flyte-run-status" data-status="{escape(status)}" '
                            f'style="color:{STATUS_COLORS.get(status, ("", "#333"))[1]}">{escape(status)}</span>'
                            f" · {escape(elapsed)} · {escape(self.source_note)}")
        wf = workflow_from_graph_json(dict(graph), str(run.get("notebook") or ""))
        # scaled to fit, not scrolled: a failed task low in a long graph is in view at once
        states = {n: str(t.get("status")) for n, t in tasks.items()}
        self.graph.value = f'<div class="flyte-graph-box">{render_svg(wf, states, GRAPH_HEIGHT)}</div>'
        self.table.value = tasks_html(tasks, sizes)
        self.output.value = output_html(str(run.get("run_id")), tasks, output or {})
        cancelled = cancel_line(run)  # who stopped it; its stopped tasks are nobody's failure: nothing to debug
        self.failures.value = failures_html(str(run.get("run_id")), tasks, run.get("error")) + (
            f'<div class="flyte-cancelled" style="color:#ca6f1e">{escape(cancelled)}</div>' if cancelled else "")


def tasks_html(tasks: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, int]) -> str:
    rows = []
    for name, task in tasks.items():
        state = str(task.get("status"))
        color = STATUS_COLORS.get(state, ("", "#333"))[1]
        mapped = f" x{sizes[name]} elements" if name in sizes else ""
        rows.append(
            f'<tr class="flyte-task-row" data-task="{escape(name)}" data-status="{escape(state)}">'
            f"<td><b>{escape(name)}</b>{escape(mapped)}</td><td>{escape(str(task.get('cell', '-')))}</td>"
            f'<td style="color:{color}">{escape(state)}</td><td>{task.get("attempts", 0)}</td>'
            f"<td>{escape(format_duration(task.get('duration_s')))}</td>"
            f"<td>{escape(cached_text(task))}</td>"
            f"<td>{escape(format_resources(task.get('resources')))}</td>"
            f'<td class="flyte-used">{escape(format_usage(task.get("usage")))}</td></tr>')
    head = "".join(f"<th style='text-align:left;padding-right:12px'>{h}</th>"
                   for h in ("task", "cell", "status", "attempts", "duration", "cached", "resources", "used"))
    return f'<table class="flyte-tasks"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def failures_html(run_id: str, tasks: Mapping[str, Mapping[str, Any]], run_error: Any) -> str:
    parts = []
    for name, task in tasks.items():
        if task.get("status") != TaskStatus.FAILED:
            continue
        error = task.get("error") or {}
        notebook = task.get("output_notebook")
        # Lab's flyte_lab extension opens such a link in its read-only notebook view (at the failing cell); the
        # path stays readable for a notebook shown elsewhere
        link = (f'<div>executed notebook: <a href="#" class="flyte-open-executed" data-flyte-executed-run='
                f'"{escape(run_id)}" data-flyte-executed-task="{escape(name)}" title="{escape(notebook)}">open '
                f"read-only in Lab</a> <code>{escape(notebook)}</code></div>" if notebook else "")
        parts.append(
            f'<div class="flyte-failure" data-task="{escape(name)}" data-cell="{escape(str(error.get("cell")))}" '
            f'data-line="{escape(str(error.get("line")))}" style="border-left:4px solid #c0392b;padding-left:8px;'
            'margin-top:8px">'
            f'<div style="color:#c0392b;font-weight:bold">{escape(task_error_line(name, task))}</div>'
            f'<pre style="white-space:pre-wrap;font-size:11px;font-family:monospace">'
            f'{escape(str(error.get("traceback") or ""))}</pre>'
            f"{link}<div>next: <code>{escape(debug_hint(run_id, name))}</code> loads the inputs it failed on "
            f"into this kernel (or <code>flyte-lab debug {escape(run_id)} {escape(name)}</code> writes a "
            "notebook)</div></div>")
    if run_error:
        text = run_error.get("message") if isinstance(run_error, Mapping) else run_error
        kind = run_error.get("type") if isinstance(run_error, Mapping) else None
        parts.append(f'<div class="flyte-run-error" style="color:#c0392b">run error: '
                     f"{escape(': '.join(str(p) for p in (kind, text) if p))}</div>")
    return "".join(parts)


def runs_html(runs: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """Recent runs as an HTML table (the `runs --json` rows), newest first."""
    if not runs:
        return "<p>no runs yet; <code>%flyte_run</code> starts one</p>"
    rows = []
    for run in runs:
        state = str(run.get("status"))
        color = STATUS_COLORS.get(state, ("", "#333"))[1]
        schedule = f" [{run['schedule']}]" if run.get("schedule") else ""
        rows.append(
            f'<tr class="flyte-run-row" data-run="{escape(str(run["run_id"]))}" data-status="{escape(state)}">'
            f"<td><code>{escape(str(run['run_id']))}</code></td><td style='color:{color}'>{escape(state)}</td>"
            f"<td>{escape(str(run.get('notebook')))}{escape(schedule)}</td>"
            f"<td>{escape(str(run.get('created_at') or '-'))}</td>"
            f"<td>{escape(format_duration(run_duration(run, now or datetime.now(UTC))))}</td></tr>")
    head = "".join(f"<th style='text-align:left;padding-right:12px'>{h}</th>"
                   for h in ("run id", "status", "notebook", "created (UTC)", "duration"))
    return f'<table class="flyte-runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
