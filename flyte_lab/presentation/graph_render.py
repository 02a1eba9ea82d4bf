"""Draw a `Workflow` as an SVG picture (and HTML with its diagnostics), in pure Python.

One picture everywhere (`%flyte_graph`, the run widget, the dashboard), laid
out the Sugiyama way:

- layers: a task's layer is its longest path from a root along the
  topological order (`wf.order`), so every edge points down; tasks on or
  below a cycle share one last layer. Each workflow input is its own node,
  just above its first consumer; a cell whose header does not parse stays in
  the picture as a red node with its diagnostic;
- an edge that skips layers gets a virtual node in each layer it crosses, so
  it is routed through the gaps between boxes instead of under them;
- order within layers: barycentre sweeps down and up (a few passes, O(nodes
  + edges) each), which removes most crossings; 1000-task graphs stay instant;
- ports: a node's edges leave and arrive at distinct points along its sides,
  sorted by where their other end is, and each label sits on its own edge's
  first segment (staggered between siblings), never at a shared midpoint.

Nodes are coloured by their diagnostics, or by run status when `status` is
given, and show map-over, cache, retries, timeout and resources.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from typing import Any

from flyte_lab.graph.model import Diagnostic, Task, Workflow
from flyte_lab.statuses import TaskStatus

NODE_W, NODE_H = 190, 58
H_GAP, V_GAP, MARGIN = 36, 70, 20
DUMMY_W, DUMMY_GAP = 14, 10  # a virtual node is a slot for a long edge, not a box
MAX_LABEL = 24
MAX_BADGES = 32  # characters of the options line that fit in a box
SWEEPS = 4
INPUT_COLORS = ("#ffffff", "#5d6d7e")

# (fill, stroke) per diagnostic state
DIAGNOSTIC_COLORS: dict[str, tuple[str, str]] = {
    "error": ("#f6b3b3", "#c0392b"),
    "warning": ("#fbe0a1", "#d68910"),
    "ok": ("#bfe8c0", "#2e8b57"),
}
# (fill, stroke) per task status (the graph's boxes) and run status (the widget's title)
STATUS_COLORS: dict[str, tuple[str, str]] = {
    TaskStatus.QUEUED: ("#d5d8dc", "#7f8c8d"),
    TaskStatus.RUNNING: ("#aed6f1", "#2471a3"),
    TaskStatus.SUCCEEDED: ("#bfe8c0", "#2e8b57"),
    TaskStatus.FAILED: ("#f6b3b3", "#c0392b"),
    TaskStatus.CACHED: ("#a3e4d7", "#138d75"),
    TaskStatus.SKIPPED: ("#f2f3f4", "#b3b6b7"),
    TaskStatus.CANCELLED: ("#fad7a0", "#ca6f1e"),
    TaskStatus.REUSED: ("#d7bde2", "#7d3c98"),  # an earlier run's outputs (a partial run)
}
_SEVERITY_TEXT = {"error": "#c0392b", "warning": "#b9770e"}
_ids = itertools.count(1)  # marker ids must be unique when several graphs share one page


def diagnostic_state(wf: Workflow) -> dict[str, str]:
    """"error" / "warning" / "ok" per task, from the workflow's diagnostics.

    A `cycle` diagnostic names only the cycle's first task; every task on a
    cycle is drawn as an error so the whole loop stands out.
    """
    state = dict.fromkeys(wf.tasks, "ok")
    for diag in wf.diagnostics:
        if diag.task in state and state[diag.task] != "error":
            state[diag.task] = "error" if diag.severity == "error" else "warning"
    for name in cycle_members(wf):
        state[name] = "error"
    return state


def cycle_members(wf: Workflow) -> set[str]:
    """Tasks on a cycle (or between two cycles), in O(tasks + edges).

    Kahn's algorithm already left out every task that is on or below a cycle;
    trimming, from the bottom, those with no way back into that set leaves the
    ones that both come from and lead to a cycle.
    """
    ordered = set(wf.order)
    left = {name for name in wf.tasks if name not in ordered}
    children: dict[str, set[str]] = defaultdict(set)
    parents: dict[str, set[str]] = defaultdict(set)
    for src, dst, _ in wf.edges:
        if src in left and dst in left and src != dst:
            children[src].add(dst)
            parents[dst].add(src)
        elif src == dst and src in left:
            children[src].add(dst)
    outdegree = {name: len(children[name]) for name in left}
    sinks = [name for name, degree in outdegree.items() if degree == 0]
    while sinks:
        name = sinks.pop()
        left.discard(name)
        for parent in parents[name]:
            outdegree[parent] -= 1
            if outdegree[parent] == 0:
                sinks.append(parent)
    return left


@dataclass
class _Node:
    id: str
    kind: str  # "task" | "input" | "bad" | "dummy"
    layer: int
    x: float = 0.0
    y: float = 0.0

    @property
    def width(self) -> float:
        return DUMMY_W if self.kind == "dummy" else NODE_W


@dataclass
class _Edge:
    src: str
    dst: str
    label: str
    points: list[str] = field(default_factory=list)  # node ids: src, dummies..., dst
    kind: str = "forward"  # "forward" | "cycle" (inside or up the cycle layer)


@dataclass
class _Picture:
    nodes: dict[str, _Node]
    edges: list[_Edge]
    rows: dict[int, list[str]]
    width: float = 0.0
    height: float = 0.0


def _task_layers(wf: Workflow) -> dict[str, int]:
    parents: dict[str, set[str]] = defaultdict(set)
    for src, dst, _ in wf.edges:
        parents[dst].add(src)
    layer: dict[str, int] = {}
    for name in wf.order:  # parents come first in a topological order
        layer[name] = max((layer[p] + 1 for p in parents[name] if p in layer), default=0)
    leftover = [n for n in wf.tasks if n not in layer]
    if leftover:  # cycle members and what hangs below them: one last layer
        last = max(layer.values(), default=-1) + 1
        for name in leftover:
            layer[name] = last
    return layer


def _bad_headers(wf: Workflow) -> dict[int, Diagnostic]:
    """Cells whose header did not parse (so no task came of them): cell -> its first diagnostic."""
    found: dict[int, Diagnostic] = {}
    for diag in wf.diagnostics:
        if diag.code == "bad-header" and diag.cell is not None and diag.task not in wf.tasks:
            found.setdefault(diag.cell, diag)
    return found


def _broken_edges(wf: Workflow, nodes: dict[str, _Node]) -> list[tuple[str, str, str]]:
    """(bad:CELL, consumer, name) for each input fed by an output a broken header declares."""
    bad = _bad_headers(wf)
    return [(f"bad:{wf.broken_outputs[p.name]}", task.name, p.name) for task in wf.tasks.values() if task.name in nodes
            for p in task.inputs if p.name in wf.broken_outputs and wf.broken_outputs[p.name] in bad]


def _build(wf: Workflow) -> _Picture:
    """Nodes in layers (virtual ones for long edges), ordered by barycentre sweeps, then coordinates."""
    layers = _task_layers(wf)
    nodes: dict[str, _Node] = {name: _Node(name, "task", layer) for name, layer in layers.items()}
    for spec in wf.workflow_inputs.values():
        consumers = [c for c in spec.consumers if c in nodes]
        if consumers:
            nodes[f"input:{spec.name}"] = _Node(f"input:{spec.name}", "input",
                                                min(nodes[c].layer for c in consumers) - 1)
    fed = _broken_edges(wf, nodes)
    for cell in sorted(_bad_headers(wf)):
        below = [nodes[dst].layer for src, dst, _ in fed if src == f"bad:{cell}"]
        nodes[f"bad:{cell}"] = _Node(f"bad:{cell}", "bad", min(below, default=0) - 1)
    low = min((n.layer for n in nodes.values()), default=0)
    for node in nodes.values():
        node.layer -= low
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, dst, name in wf.edges:
        if src in nodes and dst in nodes:
            grouped[(src, dst)].append(name)
    for src, dst, name in fed:
        grouped[(src, dst)].append(name)
    edges = [_Edge(src, dst, ", ".join(names)) for (src, dst), names in grouped.items()]
    for spec in wf.workflow_inputs.values():
        for consumer in spec.consumers:
            if f"input:{spec.name}" in nodes and consumer in nodes:
                edges.append(_Edge(f"input:{spec.name}", consumer, ""))
    budget = 4 * len(nodes) + 100  # virtual nodes; past it, long edges are drawn straight
    serial = itertools.count()
    for edge in edges:
        span = nodes[edge.dst].layer - nodes[edge.src].layer
        if span <= 0:
            edge.kind = "cycle"
            edge.points = [edge.src, edge.dst]
            continue
        if span - 1 > budget:
            edge.points = [edge.src, edge.dst]
            continue
        budget -= span - 1
        chain = [edge.src]
        for layer in range(nodes[edge.src].layer + 1, nodes[edge.dst].layer):
            dummy = f"~{next(serial)}"
            nodes[dummy] = _Node(dummy, "dummy", layer)
            chain.append(dummy)
        edge.points = [*chain, edge.dst]
    rows = _order(wf, nodes, edges)
    picture = _Picture(nodes, edges, rows)
    _place(picture, cycle=len(wf.order) < len(wf.tasks))
    return picture


def _order(wf: Workflow, nodes: dict[str, _Node], edges: list[_Edge]) -> dict[int, list[str]]:
    up: dict[str, list[str]] = defaultdict(list)
    down: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        if edge.kind != "forward":
            continue
        for a, b in itertools.pairwise(edge.points):
            if nodes[b].layer == nodes[a].layer + 1:
                down[a].append(b)
                up[b].append(a)
    rows: dict[int, list[str]] = defaultdict(list)
    cell = {name: task.cell for name, task in wf.tasks.items()}
    for node_id in nodes:
        rows[nodes[node_id].layer].append(node_id)
    index: dict[str, float] = {}

    def sort_row(layer: int, neighbours: dict[str, list[str]]) -> None:
        row = rows[layer]

        def key(node_id: str) -> tuple[float, float]:
            near = [index[n] for n in neighbours[node_id] if n in index]
            return (sum(near) / len(near) if near else index.get(node_id, -1.0), cell.get(node_id, 0))

        row.sort(key=key)
        for pos, node_id in enumerate(row):
            index[node_id] = pos - (len(row) - 1) / 2  # centred, so rows of different sizes compare

    for layer in sorted(rows):
        sort_row(layer, up)
    for _ in range(SWEEPS):
        for layer in sorted(rows, reverse=True)[1:]:
            sort_row(layer, down)
        for layer in sorted(rows)[1:]:
            sort_row(layer, up)
    return dict(rows)


def _place(picture: _Picture, cycle: bool) -> None:
    widths = {}
    for layer, row in picture.rows.items():
        widths[layer] = sum(picture.nodes[n].width for n in row) + sum(
            DUMMY_GAP if "dummy" in (picture.nodes[a].kind, picture.nodes[b].kind) else H_GAP
            for a, b in itertools.pairwise(row))
    widest = max(widths.values(), default=0.0)
    picture.width = 2 * MARGIN + widest
    picture.height = 2 * MARGIN + len(picture.rows) * NODE_H + max(len(picture.rows) - 1, 0) * V_GAP
    if cycle:
        picture.height += V_GAP  # room for the U-shaped edges under the cycle layer
    for layer, row in picture.rows.items():
        x = MARGIN + (widest - widths[layer]) / 2
        previous: _Node | None = None
        for node_id in row:
            node = picture.nodes[node_id]
            if previous is not None:
                x += DUMMY_GAP if "dummy" in (previous.kind, node.kind) else H_GAP
            node.x, node.y = x, MARGIN + layer * (NODE_H + V_GAP)
            x += node.width
            previous = node


def layout(wf: Workflow, kinds: tuple[str, ...] = ("task",)) -> dict[str, tuple[int, int]]:
    """(layer, position among the nodes of those `kinds` in that layer) per node: tasks by name,
    workflow inputs as `input:NAME`, bad headers as `bad:CELL`."""
    picture = _build(wf)
    place: dict[str, tuple[int, int]] = {}
    for layer, row in picture.rows.items():
        shown = [n for n in row if picture.nodes[n].kind in kinds]
        for pos, name in enumerate(shown):
            place[name] = (layer, pos)
    return place


def render_svg(wf: Workflow, status: dict[str, str] | None = None, fit_height: int | None = None) -> str:
    """The graph as a standalone `<svg>` element; `status` (task -> run status) overrides diagnostics.
    `fit_height`: drawn scaled down (never up) to fit that height and its container's width, so every node, a
    failed one too, is in view without scrolling."""
    picture = _build(wf)
    if not any(n.kind != "dummy" for n in picture.nodes.values()):
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="240" height="40" viewBox="0 0 240 40">'
                '<text x="10" y="25" font-family="sans-serif" font-size="13">no tasks in this notebook</text>'
                "</svg>")
    width, height = picture.width, picture.height
    marker = f"flyte-arrow-{next(_ids)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flyte-graph-svg" width="{width:g}" '
        f'height="{height:g}" viewBox="0 0 {width:g} {height:g}" font-family="sans-serif" font-size="12"'
        + (f' style="max-width:100%;max-height:{fit_height}px;width:auto;height:auto"' if fit_height else "") + ">",
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    parts += _edges(picture, marker)
    parts += _nodes(wf, picture, status)
    parts.append("</svg>")
    return "\n".join(parts)


def _ports(picture: _Picture) -> dict[tuple[int, str], float]:
    """x of each edge's end at a node: (edge index, "out"/"in") -> x, spread along the node's side."""
    outs: dict[str, list[tuple[float, int]]] = defaultdict(list)
    ins: dict[str, list[tuple[float, int]]] = defaultdict(list)
    nodes = picture.nodes
    for i, edge in enumerate(picture.edges):
        if edge.kind != "forward":
            continue
        after, before = nodes[edge.points[1]], nodes[edge.points[-2]]
        outs[edge.src].append((after.x + after.width / 2, i))
        ins[edge.dst].append((before.x + before.width / 2, i))
    ports: dict[tuple[int, str], float] = {}
    for side, table in (("out", outs), ("in", ins)):
        for node_id, ends in table.items():
            node = nodes[node_id]
            ends.sort()
            for k, (_, i) in enumerate(ends):
                ports[(i, side)] = node.x + node.width * (k + 1) / (len(ends) + 1)
    return ports


def _bezier(p0: tuple[float, float], p1: tuple[float, float], t: float) -> tuple[float, float]:
    """A point on the vertical-tangent cubic from p0 down to p1."""
    (x0, y0), (x1, y1) = p0, p1
    bend = (y1 - y0) / 2
    u = 1 - t
    x = x0 * (u ** 3 + 3 * u * u * t) + x1 * (3 * u * t * t + t ** 3)
    y = y0 * u ** 3 + 3 * u * u * t * (y0 + bend) + 3 * u * t * t * (y1 - bend) + y1 * t ** 3
    return x, y


def _edges(picture: _Picture, marker: str) -> list[str]:
    nodes = picture.nodes
    ports = _ports(picture)
    siblings: dict[str, list[int]] = defaultdict(list)
    for i, edge in enumerate(picture.edges):
        if edge.label and edge.kind == "forward":
            siblings[edge.src].append(i)
    out = ['<g class="flyte-edges" fill="none" stroke="#555" stroke-width="1.4">']
    labels = []
    for i, edge in enumerate(picture.edges):
        src, dst = nodes[edge.src], nodes[edge.dst]
        css = ' stroke-dasharray="4 3"' if src.kind == "input" else ""
        if edge.kind == "forward":
            path, first = _route(edge, nodes, ports[(i, "out")], ports[(i, "in")])
            if edge.label:
                mine = sorted(siblings[edge.src], key=lambda j: ports[(j, "out")])
                k = mine.index(i)
                t = 0.5 if len(mine) == 1 else 0.3 + 0.4 * k / (len(mine) - 1)
                labels.append((edge.label, *_bezier(*first, t)))
        else:
            path = _cycle_path(src, dst, labels, edge.label)
        label = escape(edge.label or edge.src.removeprefix("input:"))
        out.append(f'<path d="{path}" marker-end="url(#{marker})"{css} data-from="{escape(edge.src)}" '
                   f'data-to="{escape(edge.dst)}"><title>{label}</title></path>')
    out.append("</g>")
    # labels after every line: a white halo keeps each readable over crossing lines
    out.append('<g class="flyte-edge-labels">')
    for text, x, y in labels:
        out.append(f'<text x="{x:g}" y="{y + 4:g}" text-anchor="middle" font-size="11" fill="#333" '
                   f'stroke="white" stroke-width="3" paint-order="stroke">{escape(text)}</text>')
    out.append("</g>")
    return out


def _route(edge: _Edge, nodes: dict[str, _Node], x_out: float, x_in: float
           ) -> tuple[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Through the virtual nodes of a long edge: smooth curves in the gaps, straight through its layers."""
    src, dst = nodes[edge.src], nodes[edge.dst]
    stops: list[tuple[float, float, float]] = [(x_out, src.y + NODE_H, src.y + NODE_H)]  # (x, y in, y out)
    for dummy_id in edge.points[1:-1]:
        dummy = nodes[dummy_id]
        stops.append((dummy.x + dummy.width / 2, dummy.y, dummy.y + NODE_H))
    stops.append((x_in, dst.y, dst.y))
    d = [f"M {stops[0][0]:g} {stops[0][2]:g}"]
    for (x0, _, y0), (x1, y1, y1_out) in itertools.pairwise(stops):
        bend = (y1 - y0) / 2
        d.append(f"C {x0:g} {y0 + bend:g}, {x1:g} {y1 - bend:g}, {x1:g} {y1:g}")
        if y1_out != y1:
            d.append(f"L {x1:g} {y1_out:g}")
    first = ((stops[0][0], stops[0][2]), (stops[1][0], stops[1][1]))
    return " ".join(d), first


def _cycle_path(src: _Node, dst: _Node, labels: list[tuple[str, float, float]], label: str) -> str:
    x1, y1 = src.x + NODE_W / 2, src.y + NODE_H
    x2, y2 = dst.x + NODE_W / 2, dst.y
    if src.y == dst.y:  # inside the last (cycle) layer: a U below the row, bottom to bottom
        depth = V_GAP * (0.5 if x1 < x2 else 0.8)  # opposite directions must not overlap
        if label:
            labels.append((label, (x1 + x2) / 2, y1 + depth * 0.75))
        return f"M {x1:g} {y1:g} C {x1:g} {y1 + depth:g}, {x2:g} {y1 + depth:g}, {x2:g} {y1:g}"
    side = NODE_W * 0.75  # an edge pointing up: loop around the side
    if label:
        labels.append((label, (x1 + x2) / 2 + side, (y1 + y2) / 2))
    return f"M {x1:g} {y1:g} C {x1 + side:g} {y1 + V_GAP:g}, {x2 + side:g} {y2 - V_GAP:g}, {x2:g} {y2:g}"


def badges(task: Task) -> list[str]:
    """What a node says about a task's options: map-over, cache, retries, timeout, resources, image."""
    opts = task.options
    out = []
    if opts.map_over:
        out.append(f"map-over {opts.map_over}")
    if opts.cache:
        out.append("cache" + (f" v{opts.cache_version}" if opts.cache_version else ""))
    if opts.retries:
        out.append(f"retries {opts.retries}")
    if opts.timeout_s:
        out.append(f"timeout {opts.timeout_s:g}s")
    out += [f"{key} {value}" for key, value in opts.resources().items()]
    if opts.image:
        out.append(f"image {opts.image}")
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _nodes(wf: Workflow, picture: _Picture, status: dict[str, str] | None) -> list[str]:
    states = ({name: status.get(name, TaskStatus.QUEUED) for name in wf.tasks} if status is not None
              else diagnostic_state(wf))
    palette = STATUS_COLORS if status is not None else DIAGNOSTIC_COLORS
    notes: dict[str, list[str]] = defaultdict(list)
    for diag in wf.diagnostics:
        if diag.task is not None:
            notes[diag.task].append(f"{diag.severity}[{diag.code}]: {diag.message}")
    bad = _bad_headers(wf)
    out = ['<g class="flyte-tasks">']
    for node in picture.nodes.values():
        x, y, mid = node.x, node.y, node.x + NODE_W / 2
        if node.kind == "task":
            task = wf.tasks[node.id]
            state = states[node.id]
            fill, stroke = palette.get(state, STATUS_COLORS[TaskStatus.QUEUED])
            sub = f"cell {task.cell}" + (f" · {state}" if status is not None else "")
            opts = " · ".join(badges(task))
            tip = "\n".join([f"{node.id} (cell {task.cell})", *([opts] if opts else []), *notes[node.id]])
            out.append(
                f'<g class="flyte-task" data-task="{escape(node.id)}" data-state="{escape(state)}">'
                f"<title>{escape(tip)}</title>"
                f'<rect x="{x:g}" y="{y:g}" width="{NODE_W}" height="{NODE_H}" rx="8" ry="8" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
                f'<text x="{mid:g}" y="{y + 17:g}" text-anchor="middle" font-weight="bold">'
                f"{escape(_clip(node.id, MAX_LABEL))}</text>"
                f'<text x="{mid:g}" y="{y + 33:g}" text-anchor="middle" font-size="11" fill="#444">'
                f"{escape(sub)}</text>"
                f'<text class="flyte-badges" x="{mid:g}" y="{y + 49:g}" text-anchor="middle" font-size="10" '
                f'fill="#555">{escape(_clip(opts, MAX_BADGES))}</text></g>')
        elif node.kind == "input":
            spec = wf.workflow_inputs[node.id.removeprefix("input:")]
            value = f"= {spec.default!r}" if spec.has_default else "from -p or the parameters cell"
            tip = f"workflow input {spec.name}: {spec.type.display()} {value}"
            out.append(
                f'<g class="flyte-input" data-input="{escape(spec.name)}"><title>{escape(tip)}</title>'
                f'<rect x="{x:g}" y="{y + 8:g}" width="{NODE_W}" height="{NODE_H - 16}" rx="21" ry="21" '
                f'fill="{INPUT_COLORS[0]}" stroke="{INPUT_COLORS[1]}" stroke-dasharray="4 3" stroke-width="1.2"/>'
                f'<text x="{mid:g}" y="{y + 26:g}" text-anchor="middle" font-size="11">'
                f"{escape(_clip(f'{spec.name}: {spec.type.display()}', MAX_LABEL + 4))}</text>"
                f'<text x="{mid:g}" y="{y + 40:g}" text-anchor="middle" font-size="10" fill="#555">'
                f"{escape(_clip(value, MAX_BADGES))}</text></g>")
        elif node.kind == "bad":
            diag = bad[int(node.id.removeprefix("bad:"))]
            fill, stroke = DIAGNOSTIC_COLORS["error"]
            out.append(
                f'<g class="flyte-bad-header" data-cell="{diag.cell}" data-state="error">'
                f"<title>{escape(f'error[{diag.code}]: {diag.message}')}</title>"
                f'<rect x="{x:g}" y="{y:g}" width="{NODE_W}" height="{NODE_H}" rx="8" ry="8" fill="{fill}" '
                f'stroke="{stroke}" stroke-width="1.5" stroke-dasharray="6 3"/>'
                f'<text x="{mid:g}" y="{y + 17:g}" text-anchor="middle" font-weight="bold">'
                f"cell {diag.cell}: bad header</text>"
                f'<text x="{mid:g}" y="{y + 35:g}" text-anchor="middle" font-size="10" fill="#7b241c">'
                f"{escape(_clip(diag.message, MAX_BADGES))}</text></g>")
    out.append("</g>")
    return out


def render_html(wf: Workflow, status: dict[str, str] | None = None) -> str:
    """The SVG with a title line and the diagnostics listed under it (errors first)."""
    errors = sum(d.severity == "error" for d in wf.diagnostics)
    warnings = len(wf.diagnostics) - errors
    title = (f"{escape(wf.path)}: {len(wf.tasks)} task{'s' * (len(wf.tasks) != 1)}, "
             f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    parts = [
        '<div class="flyte-graph">',
        f'<div class="flyte-graph-title" style="font-weight:bold;margin-bottom:4px">{title}</div>',
        f'<div style="overflow:auto;max-height:640px">{render_svg(wf, status)}</div>',
    ]
    if wf.diagnostics:
        parts.append('<ul class="flyte-diagnostics">')
        parts += [_diagnostic_item(d) for d in sorted(wf.diagnostics, key=_diagnostic_key)]
        parts.append("</ul>")
    else:
        parts.append('<p class="flyte-diagnostics-none">No diagnostics: the graph is valid.</p>')
    parts.append("</div>")
    return "\n".join(parts)


def _diagnostic_key(diag: Diagnostic) -> tuple[Any, ...]:
    return (diag.severity != "error", diag.cell or 0, diag.line or 0, diag.code)


def _diagnostic_item(diag: Diagnostic) -> str:
    where = ", ".join(part for part in (f"cell {diag.cell}" if diag.cell is not None else "",
                                        f"line {diag.line}" if diag.line is not None else "") if part)
    color = _SEVERITY_TEXT.get(diag.severity, "#333")
    return (f'<li class="flyte-diag flyte-diag-{escape(diag.severity)}" data-code="{escape(diag.code)}">'
            f'<code style="color:{color}">{escape(diag.severity)}[{escape(diag.code)}]</code> '
            f"{escape(where)}{': ' if where else ''}{escape(diag.message)}</li>")


def workflow_from_graph_json(graph: dict[str, Any], path: str = "") -> Workflow:
    """A drawable `Workflow` from the `validate --json` object a run stored at launch.

    Only what the picture needs comes back: names, cells, edges, options and
    diagnostics (types as their text); the order is recomputed.
    """
    from flyte_lab.graph.model import Param, Task, TaskOptions, TypeRef, WorkflowInput
    from flyte_lab.graph.topo_order import topological_order

    tasks: dict[str, Task] = {}
    for entry in graph.get("tasks", []):
        raw = dict(entry.get("options") or {})
        env = tuple((str(k), str(v)) for k, v in (raw.pop("env", None) or {}).items())
        known = {k: v for k, v in raw.items() if k in TaskOptions.__dataclass_fields__}
        tasks[entry["name"]] = Task(
            name=entry["name"], cell=int(entry.get("cell") or 0), header="", body="", body_line=2,
            inputs=[Param(n, TypeRef(t, text=t)) for n, t in (entry.get("inputs") or {}).items()],
            outputs=[Param(n, TypeRef(t, text=t)) for n, t in (entry.get("outputs") or {}).items()],
            options=TaskOptions(**known, env=env))
    edges = [(str(a), str(b), str(n)) for a, b, n in graph.get("edges", []) if a in tasks and b in tasks]
    order = topological_order(tasks, ((a, b) for a, b, _ in edges))
    diagnostics = [Diagnostic(**{k: d.get(k) for k in ("severity", "code", "message", "task", "cell", "line", "name")})
                   for d in graph.get("diagnostics", [])]
    inputs = {}
    for name, spec in (graph.get("workflow_inputs") or {}).items():
        consumers = tuple(t.name for t in tasks.values() if t.input(name) is not None)
        text = str(spec.get("type") or "")
        default = spec.get("default")
        inputs[name] = WorkflowInput(name, TypeRef(text, text=text), default is not None, default, consumers)
    return Workflow(path=path, tasks=tasks, edges=edges, diagnostics=diagnostics, order=order,
                    workflow_inputs=inputs)
