"""`/`: every run, newest first, filtered by status, notebook and schedule, one page at a time; and the schedules.

The store pages: each refresh is one COUNT, one page of `PAGE_SIZE` summaries with their tasks' states
(`run_summaries`: LIMIT/OFFSET in SQL, the same few statements whatever the page holds), the distinct notebooks and
schedules for the filters; so tens of thousands of runs cost what one page costs, on the server and in the browser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

import pandas as pd
import panel as pn

from flyte_lab.dashboard.common import CSS, frame, html, link_formatter, load_extensions, message_page, status_formatter
from flyte_lab.dashboard.store_access import StoreProblem, open_store
from flyte_lab.dashboard.table_rows import RUN_COLUMNS, notebook_labels, page_slice, run_row
from flyte_lab.presentation.formats import format_fire_time, notebook_name
from flyte_lab.run_progress import manifest_lengths, summary_sizes
from flyte_lab.statuses import RunStatus

PAGE_SIZE = 25
ALL = "(all)"
REFRESH_MS = 5000


class RunsPage:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.list_length = manifest_lengths()  # the map-over tasks' element counts, for each run's progress
        self.sizes: dict[str, dict[str, int]] = {}  # run id -> those counts, for the runs shown
        self.total = 0  # runs in the store, unfiltered
        self.status = pn.widgets.Select(label="status", options=[ALL, *(s.value for s in RunStatus)], value=ALL,
                                        width=140)
        self.notebook = pn.widgets.Select(label="notebook", options=[ALL], value=ALL, width=220)
        self.schedule = pn.widgets.Select(label="schedule", options=[ALL], value=ALL, width=180)
        self.page = pn.widgets.IntInput(label="page", value=1, start=1, width=90)
        self.prev = pn.widgets.Button(label="◀ newer", width=90)
        self.next = pn.widgets.Button(label="older ▶", width=90)
        self.count = html("", sizing_mode="fixed", width=220, height=40)
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=RUN_COLUMNS), show_index=False, disabled=True, sizing_mode="stretch_width",
            formatters={"run": link_formatter("./run?id="), "status": status_formatter()}, layout="fit_data_stretch",
            stylesheets=[CSS])
        self.empty = html("")
        self.schedules = html("")
        for widget in (self.status, self.notebook, self.schedule):
            widget.param.watch(self._filter_changed, "value")
        self.page.param.watch(lambda _e: self.show(), "value")
        self.prev.on_click(lambda _e: self._step(-1))
        self.next.on_click(lambda _e: self._step(1))
        self.refresh()

    def _filter_changed(self, _event: Any) -> None:
        if self.page.value != 1:
            self.page.value = 1  # shows the page through its watcher
        else:
            self.show()

    def _step(self, delta: int) -> None:
        self.page.value = max(1, int(self.page.value or 1) + delta)

    def refresh(self) -> None:
        """Read the filter choices and the schedules, then show the current page."""
        notebooks, schedules = self.store.run_filter_values()
        # labels are file names (full paths only where two share one); values are the stored paths
        self.notebook.options = {ALL: ALL, **notebook_labels(notebooks)}
        self.schedule.options = [ALL, *schedules]
        self.schedules.object = self._schedules_html()
        self.show()

    def filters(self) -> dict[str, str | None]:
        """The store's filter arguments for the chosen status, notebook and schedule."""
        return {key: None if widget.value == ALL else widget.value
                for key, widget in (("status", self.status), ("notebook", self.notebook),
                                    ("schedule", self.schedule))}

    def show(self) -> None:
        filters = self.filters()
        matching = self.store.count_runs(**filters)
        self.total = matching if not any(filters.values()) else self.store.count_runs()
        first, end, pages = page_slice(matching, int(self.page.value or 1), PAGE_SIZE)
        now = datetime.now(UTC)
        page = self.store.run_summaries(limit=end - first, offset=first, **filters) if end > first else []
        shown, sizes = [], {}
        for summary in page:
            run_id = summary["run_id"]
            sizes[run_id] = summary_sizes(summary, self.list_length, self.sizes.get(run_id))
            shown.append(run_row(summary, now, sizes[run_id]))
        self.sizes = sizes  # a manifest, once stored, does not change: the next refresh reads no manifest again
        self.table.value = pd.DataFrame(shown, columns=RUN_COLUMNS)
        self.count.object = (f'<span class="flyte-count">{matching} runs · page {first // PAGE_SIZE + 1} of '
                             f"{pages}</span>")
        self.prev.disabled = first == 0
        self.next.disabled = end >= matching
        self.empty.object = "" if matching else (
            '<p class="flyte-empty">No runs match these filters.</p>' if self.total else
            '<p class="flyte-empty">No runs yet. Start one with <code>flyte-lab run NOTEBOOK</code> (or '
            "<code>%flyte_run</code> in a notebook) and it appears here.</p>")

    def _schedules_html(self) -> str:
        from flyte_lab.scheduler.overview import describe, overview

        rows = overview(self.store, datetime.now(UTC))
        if not rows:
            return ""
        lines = []
        for r in rows:
            fire = (escape(f"invalid: {r['invalid']}") if r["invalid"] else
                    "paused" if r["paused"] else escape(format_fire_time(r["next_fire_time"], str(r["timezone"]))))
            lines.append(f"<tr><td>{escape(r['name'])}</td><td><code>{escape(describe(r))}</code></td><td>{fire}</td>"
                         f"<td>{escape(notebook_name(r['notebook']))}</td></tr>")
        body = "".join(lines)
        return ('<h3>schedules</h3><table class="flyte-schedules"><thead><tr><th>name</th><th>when</th>'
                f"<th>next fire</th><th>notebook</th></tr></thead><tbody>{body}</tbody></table>")

    def view(self) -> pn.viewable.Viewable:
        filters = pn.Row(self.status, self.notebook, self.schedule, self.prev, self.page, self.next, self.count)
        return frame(html("<h2>runs</h2>"), filters, self.empty, self.table, self.schedules, name="runs")


def runs_page() -> pn.viewable.Viewable:
    load_extensions()
    store = open_store()
    if isinstance(store, StoreProblem) and store.kind != "empty":
        return message_page("The run store cannot be read", store.message, store.kind)
    if isinstance(store, StoreProblem):  # no store yet: say so, and show the runs once the first one is recorded
        holder = pn.Column(message_page("No runs yet", store.message, store.kind), sizing_mode="stretch_width")
        waiting: list[Any] = []

        def look() -> None:
            found = open_store()
            if not isinstance(found, StoreProblem):
                waiting.pop().stop()
                holder[:] = [_live(found)]

        waiting.append(pn.state.add_periodic_callback(look, period=REFRESH_MS))
        return holder
    return _live(store)


def _live(store: Any) -> pn.viewable.Viewable:
    page = RunsPage(store)
    pn.state.add_periodic_callback(page.refresh, period=REFRESH_MS)
    return page.view()
