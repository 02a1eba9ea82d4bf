"""The run's graph as a bokeh plot: the layers of `presentation.graph_render.layout`, left to right, by status.

Tasks and workflow inputs are nodes (inputs white, as in the SVG picture); a click on a task selects it in the
page's `RunState` (the run page shows its drill-down). The figure is built once; a new run record only replaces
its sources' data, and a new `task` only its selection.

Why it stays fast at 1,000 tasks: all edges are one MultiLine, all boxes one Rect per kind, and node names
(canvas text is what costs most to draw) are drawn only once the view is zoomed in enough to read them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import panel as pn
import param
from bokeh.models import ColumnDataSource, CustomJS, HoverTool, Rect, TapTool
from bokeh.plotting import figure

from flyte_lab.dashboard.run_state import RunPart, RunState
from flyte_lab.dashboard.table_rows import STATUS_COLORS
from flyte_lab.presentation.formats import format_duration, format_resources
from flyte_lab.presentation.graph_render import layout, workflow_from_graph_json
from flyte_lab.statuses import TaskStatus

BOX_W, BOX_H = 0.8, 0.6
PX_PER_ROW, MAX_HEIGHT, MIN_HEIGHT = 70, 900, 220
MAX_EDGE_LABELS = 150  # past this the labels are noise (and slow to draw); hover and the task detail name inputs
NAMES_MAX_LAYERS = 20  # names are drawn while at most this many layers are in view...
NAME_PX = 18  # ...and each row gets at least this many pixels
INPUT_FILL, INPUT_LINE = "#ffffff", "#5d6d7e"
_positions: dict[str, dict[str, tuple[float, float]]] = {}  # layouts by graph (a stored graph never changes)


def positions(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """(x, y) per node (tasks by name, workflow inputs as `input:NAME`): x is the layer, y the place in it,
    each layer centred on y = 0."""
    key = hashlib.sha256(json.dumps(graph, sort_keys=True, default=str).encode()).hexdigest()
    if key not in _positions:
        if len(_positions) > 64:
            _positions.clear()
        _positions[key] = _layout(graph)
    return _positions[key]


def _layout(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    wf = workflow_from_graph_json(dict(graph))
    place = layout(wf, kinds=("task", "input"))
    sizes: dict[int, int] = {}
    for layer, _ in place.values():
        sizes[layer] = sizes.get(layer, 0) + 1
    return {name: (float(layer), (sizes[layer] - 1) / 2 - pos) for name, (layer, pos) in place.items()}


def signature(spec: Mapping[str, Any]) -> str:
    ins = ", ".join(f"{n}: {t}" for n, t in (spec.get("inputs") or {}).items())
    outs = ", ".join(f"{n}: {t}" for n, t in (spec.get("outputs") or {}).items())
    return f"{spec['name']}({ins})" + (f" -> {outs}" if outs else "")


def node_data(graph: Mapping[str, Any], run: Mapping[str, Any],
              where: Mapping[str, tuple[float, float]]) -> dict[str, list[Any]]:
    tasks = run.get("tasks") or {}
    data: dict[str, list[Any]] = {k: [] for k in ("x", "y", "name", "status", "color", "signature", "resources",
                                                  "attempts", "duration")}
    for spec in graph.get("tasks", []):
        name = spec["name"]
        if name not in where:
            continue
        task = tasks.get(name) or {}
        status = task.get("status") or TaskStatus.QUEUED
        x, y = where[name]
        data["x"].append(x)
        data["y"].append(y)
        data["name"].append(name)
        data["status"].append(status)
        data["color"].append(STATUS_COLORS.get(status, "#bdc3c7"))
        data["signature"].append(signature(spec))
        data["resources"].append(format_resources(task.get("resources") or (spec.get("options") or {})
                                                  .get("resources")))
        data["attempts"].append(task.get("attempts", 0))
        data["duration"].append(format_duration(task.get("duration_s")))
    return data


def input_data(graph: Mapping[str, Any], run: Mapping[str, Any],
               where: Mapping[str, tuple[float, float]]) -> dict[str, list[Any]]:
    """One box per workflow input: its type and the value this run used (`-p`, else the default)."""
    params = run.get("params") or {}
    data: dict[str, list[Any]] = {k: [] for k in ("x", "y", "name", "type", "value")}
    for name, spec in (graph.get("workflow_inputs") or {}).items():
        if f"input:{name}" not in where:
            continue
        x, y = where[f"input:{name}"]
        data["x"].append(x)
        data["y"].append(y)
        data["name"].append(name)
        data["type"].append(str(spec.get("type") or ""))
        data["value"].append(repr(params[name]) + " (-p)" if name in params else repr(spec.get("default")))
    return data


def _edges(graph: Mapping[str, Any], where: Mapping[str, tuple[float, float]]) -> dict[str, list[Any]]:
    """Every wire as one line from its source's right side to its consumer's left side."""
    pairs = [(src, dst, name) for src, dst, name in graph.get("edges", [])]
    for spec in graph.get("tasks", []):
        pairs += [(f"input:{n}", spec["name"], "") for n in (spec.get("inputs") or {}) if f"input:{n}" in where]
    data: dict[str, list[Any]] = {k: [] for k in ("xs", "ys", "lx", "ly", "label")}
    for src, dst, name in pairs:
        if src in where and dst in where:
            (x0, y0), (x1, y1) = where[src], where[dst]
            data["xs"].append([x0 + BOX_W / 2, x1 - BOX_W / 2])
            data["ys"].append([y0, y1])
            data["lx"].append(x0 + BOX_W / 2 + 0.1)
            data["ly"].append(y0 + (y1 - y0) * 0.1 / max(x1 - x0 - BOX_W, 0.1))
            data["label"].append(name)
    return data


class RunGraph(RunPart):
    """The figure and its sources, following `state`: its run recolours the boxes, its task is the one highlighted;
    a click on a box selects that task in `state`."""

    def __init__(self, state: RunState) -> None:
        super().__init__(state)
        graph, run = state.graph, state.run
        self.where = positions(graph)
        self.nodes = ColumnDataSource(node_data(graph, run, self.where))
        self.inputs = ColumnDataSource(input_data(graph, run, self.where))
        edges = _edges(graph, self.where)
        layers = {x for x, _ in self.where.values()}
        rows = max((sum(1 for x, _ in self.where.values() if x == layer) for layer in layers), default=1)
        height = int(min(MAX_HEIGHT, max(MIN_HEIGHT, rows * PX_PER_ROW)))
        fig = figure(height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save",
                     toolbar_location="right", title="graph (click a task for its detail)", name="flyte-graph",
                     x_axis_type=None, y_axis_type=None)  # no axes or grids at all: fewer models to build
        fig.multi_line(edges["xs"], edges["ys"], line_color="#777", line_width=1.5)
        if len(edges["label"]) <= MAX_EDGE_LABELS:
            fig.text(edges["lx"], edges["ly"], text=edges["label"], text_font_size="9pt", text_color="#555",
                     text_baseline="bottom")
        boxes = fig.rect("x", "y", width=BOX_W, height=BOX_H, fill_color="color", line_color="#333",
                         source=self.nodes, name="tasks", nonselection_fill_alpha=0.7, nonselection_line_alpha=0.7)
        boxes.selection_glyph = Rect(x="x", y="y", width=BOX_W, height=BOX_H, fill_color="color", line_color="#000",
                                     line_width=3)
        inputs = fig.rect("x", "y", width=BOX_W, height=BOX_H, fill_color=INPUT_FILL, line_color=INPUT_LINE,
                          line_dash="dashed", source=self.inputs, name="inputs")
        visible = len(layers) <= NAMES_MAX_LAYERS and rows * NAME_PX <= height
        names = [fig.text("x", "y", text="name", text_align="center", text_baseline="middle", text_font_size="10pt",
                          source=source, visible=visible) for source in (self.nodes, self.inputs)]
        for renderer in names:
            renderer.nonselection_glyph = None  # a selected task dims the other boxes, never their names
        # names are drawn only where they can be read (and a 1,000-task view stays quick to draw)
        toggle = CustomJS(args={"names": names, "x": fig.x_range, "y": fig.y_range, "layers": NAMES_MAX_LAYERS,
                                "rows": height / NAME_PX}, code="""
            const show = (x.end - x.start) <= layers + 1 && Math.abs(y.end - y.start) <= rows;
            for (const r of names) { if (r.visible != show) r.visible = show; }""")
        for axis in (fig.x_range, fig.y_range):
            axis.js_on_change("start", toggle)
            axis.js_on_change("end", toggle)
        fig.add_tools(HoverTool(renderers=[boxes], tooltips=[
            ("task", "@signature"), ("status", "@status"), ("resources", "@resources"),
            ("attempts", "@attempts"), ("duration", "@duration")]))
        fig.add_tools(HoverTool(renderers=[inputs], tooltips=[
            ("workflow input", "@name: @type"), ("value", "@value")]))
        fig.add_tools(TapTool(renderers=[boxes]))
        fig.toolbar.active_scroll = None  # the wheel scrolls the page; zooming is the user's choice in the toolbar
        self.figure = fig
        self.nodes.selected.on_change("indices", self._clicked)  # runs on the server, in the page's session
        self._highlight()
        self._pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane

    def _clicked(self, _attr: str, _old: Any, new: list[int]) -> None:
        if new and 0 <= new[0] < len(self.nodes.data["name"]):
            self.state.select(self.nodes.data["name"][new[0]])

    @param.depends("state.task", watch=True)
    def _highlight(self) -> None:
        """Highlight the state's task (chosen from the table or the picker) as if it had been clicked."""
        names = list(self.nodes.data["name"])
        wanted = [names.index(self.state.task)] if self.state.task in names else []
        if list(self.nodes.selected.indices) != wanted:
            self.nodes.selected.indices = wanted

    @param.depends("state.run", watch=True)
    def _recolour(self) -> None:
        self.nodes.data = node_data(self.state.graph, self.state.run, self.where)
        self.inputs.data = input_data(self.state.graph, self.state.run, self.where)
        self._highlight()
