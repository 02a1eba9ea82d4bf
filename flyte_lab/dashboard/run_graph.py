"""The run's graph as a bokeh plot: the layers of `kernel_ext.graph_render.layout`, left to right, by status.

The figure is built once; a live page only replaces its node source's data (colours, attempts, durations).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from bokeh.models import ColumnDataSource, HoverTool, TapTool
from bokeh.plotting import figure

from flyte_lab.cli.report import format_duration, format_resources
from flyte_lab.dashboard.views import STATUS_COLORS
from flyte_lab.kernel_ext.graph_render import layout, workflow_from_graph_json

BOX_W, BOX_H = 0.8, 0.6
PX_PER_ROW, MAX_HEIGHT, MIN_HEIGHT = 70, 900, 220
MAX_EDGE_LABELS = 150  # past this the labels are noise (and slow to draw); hover and the task detail name inputs
_positions: dict[str, dict[str, tuple[float, float]]] = {}  # layouts by graph (a stored graph never changes)


def positions(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """(x, y) per task: x is the layer, y the place in its layer, each layer centred on y = 0."""
    key = hashlib.sha256(json.dumps(graph, sort_keys=True, default=str).encode()).hexdigest()
    if key not in _positions:
        if len(_positions) > 64:
            _positions.clear()
        _positions[key] = _layout(graph)
    return _positions[key]


def _layout(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    wf = workflow_from_graph_json(dict(graph))
    place = layout(wf)
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
        status = task.get("status") or "queued"
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


class RunGraph:
    """The figure and its sources; `update(run)` recolours it in place."""

    def __init__(self, graph: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        self.graph = graph
        self.where = positions(graph)
        self.nodes = ColumnDataSource(node_data(graph, run, self.where))
        xs, ys, lx, ly, labels = [], [], [], [], []
        for src, dst, name in graph.get("edges", []):
            if src in self.where and dst in self.where:
                (x0, y0), (x1, y1) = self.where[src], self.where[dst]
                xs.append([x0 + BOX_W / 2, x1 - BOX_W / 2])
                ys.append([y0, y1])
                lx.append(x0 + BOX_W / 2 + 0.1)
                ly.append(y0 + (y1 - y0) * 0.1 / max(x1 - x0 - BOX_W, 0.1))
                labels.append(name)
        rows = max((sum(1 for x, _ in self.where.values() if x == layer) for layer in
                    {x for x, _ in self.where.values()}), default=1)
        height = int(min(MAX_HEIGHT, max(MIN_HEIGHT, rows * PX_PER_ROW)))
        fig = figure(height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save",
                     toolbar_location="right", title="graph", name="flyte-graph")
        fig.axis.visible = False
        fig.grid.visible = False
        fig.multi_line(xs, ys, line_color="#777", line_width=1.5)
        if len(labels) <= MAX_EDGE_LABELS:
            fig.text(lx, ly, text=labels, text_font_size="9pt", text_color="#555", text_baseline="bottom")
        boxes = fig.rect("x", "y", width=BOX_W, height=BOX_H, fill_color="color", line_color="#333",
                         source=self.nodes, name="tasks")
        fig.text("x", "y", text="name", text_align="center", text_baseline="middle", text_font_size="10pt",
                 source=self.nodes)
        fig.add_tools(HoverTool(renderers=[boxes], tooltips=[
            ("task", "@signature"), ("status", "@status"), ("resources", "@resources"),
            ("attempts", "@attempts"), ("duration", "@duration")]))
        fig.add_tools(TapTool(renderers=[boxes]))
        self.figure = fig

    def update(self, run: Mapping[str, Any]) -> None:
        self.nodes.data = node_data(self.graph, run, self.where)
