"""A Gantt chart of every attempt of a run: one row per task, bars coloured by status, hover names the worker.

Built once from the page's `RunState`; a new run record only replaces its bars' data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import panel as pn
import param
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, FactorRange, HoverTool
from bokeh.plotting import figure

from flyte_lab.dashboard.run_state import RunPart, RunState
from flyte_lab.dashboard.table_rows import STATUS_COLORS, attempt_bars

PX_PER_ROW, MAX_HEIGHT, MIN_HEIGHT = 22, 700, 160
MAX_LABELLED_ROWS = 60
# wall-clock ticks at every zoom, each label on its own: bokeh's default mixes scales ("800ms", "0ms" over a
# context line "17:14:49"); without boundary scaling every tick of one view has the same format
SUBSECOND, CLOCK, MINUTE, DAY = "%H:%M:%S.%3N", "%H:%M:%S", "%H:%M", "%Y-%m-%d"


def clock_ticks() -> DatetimeTickFormatter:
    return DatetimeTickFormatter(microseconds=SUBSECOND, milliseconds=SUBSECOND, seconds=CLOCK, minsec=CLOCK,
                                 minutes=MINUTE, hourmin=MINUTE, hours=MINUTE, days=DAY, months=DAY, years=DAY,
                                 context=None, boundary_scaling=False)


def bar_data(run: Mapping[str, Any], now: datetime | None = None) -> dict[str, list[Any]]:
    bars = attempt_bars(run, now)
    data: dict[str, list[Any]] = {k: [b[k] for b in bars] for k in ("task", "attempt", "worker", "status", "start",
                                                                    "end", "duration", "label")}
    data["color"] = [STATUS_COLORS.get(s, "#bdc3c7") for s in data["status"]]
    return data


class Timeline(RunPart):
    def __init__(self, state: RunState) -> None:
        super().__init__(state)
        run = state.run
        self.tasks = list(run.get("tasks") or {})
        self.source = ColumnDataSource(bar_data(run))
        height = int(min(MAX_HEIGHT, max(MIN_HEIGHT, 60 + PX_PER_ROW * len(self.tasks))))
        fig = figure(y_range=FactorRange(*reversed(self.tasks)), x_axis_type="datetime", height=height,
                     sizing_mode="stretch_width", title="timeline (every attempt, UTC)", name="flyte-timeline",
                     tools="xpan,xwheel_zoom,reset,save")
        bars = fig.hbar(y="task", left="start", right="end", height=0.7, fill_color="color", line_color="#333",
                        source=self.source)
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[
            ("attempt", "@label"), ("worker", "@worker"), ("status", "@status"), ("duration", "@duration")]))
        fig.ygrid.grid_line_color = None
        fig.xaxis.formatter = clock_ticks()
        fig.toolbar.active_scroll = None  # the wheel scrolls the page; zooming is the user's choice in the toolbar
        fig.yaxis.major_label_text_font_size = "8pt"
        if len(self.tasks) > MAX_LABELLED_ROWS:  # unreadable, and slow to lay out (even transparent): hover names
            fig.yaxis.visible = False
        self.figure = fig
        self._pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane

    @param.depends("state.run", watch=True)
    def _redraw(self) -> None:
        self.source.data = bar_data(self.state.run)
