"""Draw a `Workflow` as an SVG picture (and HTML with its diagnostics), in pure Python.

Layered layout: a task's layer is its longest path from a root along the
topological order (`wf.order`), so every edge points down; tasks that are
not in the order (they sit on or below a cycle) share one last layer. Within
a layer, tasks are sorted once by the mean position of their parents
(barycentre), which removes most crossings at O(tasks + edges) cost, so
1000-task graphs render instantly. Nodes are coloured by their diagnostics,
or by run status when `status` is given (the run widget and the dashboard
reuse this module for that).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from html import escape
from typing import Any

from flyte_lab.graph.model import Diagnostic, Workflow

NODE_W, NODE_H = 180, 46
H_GAP, V_GAP, MARGIN = 36, 64, 20
MAX_LABEL = 22

# (fill, stroke) per diagnostic state
DIAGNOSTIC_COLORS: dict[str, tuple[str, str]] = {
    "error": ("#f6b3b3", "#c0392b"),
    "warning": ("#fbe0a1", "#d68910"),
    "ok": ("#bfe8c0", "#2e8b57"),
}
# (fill, stroke) per run status; the names are the run record's task statuses
STATUS_COLORS: dict[str, tuple[str, str]] = {
    "queued": ("#d5d8dc", "#7f8c8d"),
    "running": ("#aed6f1", "#2471a3"),
    "succeeded": ("#bfe8c0", "#2e8b57"),
    "failed": ("#f6b3b3", "#c0392b"),
    "cached": ("#a3e4d7", "#138d75"),
    "skipped": ("#f2f3f4", "#b3b6b7"),
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


def layout(wf: Workflow) -> dict[str, tuple[int, int]]:
    """(layer, position in layer) per task."""
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
    rows: dict[int, list[str]] = defaultdict(list)
    for name in wf.tasks:
        rows[layer[name]].append(name)
    place: dict[str, tuple[int, int]] = {}
    for index in sorted(rows):
        def key(name: str, index: int = index) -> tuple[float, int]:
            above = [place[p][1] for p in parents[name] if p in place and place[p][0] < index]
            return (sum(above) / len(above) if above else -1.0, wf.tasks[name].cell)

        for pos, name in enumerate(sorted(rows[index], key=key)):
            place[name] = (index, pos)
    return place


def render_svg(wf: Workflow, status: dict[str, str] | None = None) -> str:
    """The graph as a standalone `<svg>` element; `status` (task -> run status) overrides diagnostics."""
    place = layout(wf)
    if not place:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="240" height="40" viewBox="0 0 240 40">'
                '<text x="10" y="25" font-family="sans-serif" font-size="13">no tasks in this notebook</text>'
                "</svg>")
    row_len: dict[int, int] = defaultdict(int)
    for layer_index, _ in place.values():
        row_len[layer_index] += 1
    widest = max(row_len.values())
    width = 2 * MARGIN + widest * NODE_W + (widest - 1) * H_GAP
    height = 2 * MARGIN + len(row_len) * NODE_H + (len(row_len) - 1) * V_GAP
    if len(wf.order) < len(wf.tasks):
        height += V_GAP  # room for the U-shaped edges under the cycle layer
    xy: dict[str, tuple[float, float]] = {}
    for name, (layer_index, pos) in place.items():
        row_w = row_len[layer_index] * NODE_W + (row_len[layer_index] - 1) * H_GAP
        x = MARGIN + (width - 2 * MARGIN - row_w) / 2 + pos * (NODE_W + H_GAP)
        xy[name] = (x, MARGIN + layer_index * (NODE_H + V_GAP))
    marker = f"flyte-arrow-{next(_ids)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flyte-graph-svg" width="{width:g}" '
        f'height="{height:g}" viewBox="0 0 {width:g} {height:g}" font-family="sans-serif" font-size="12">',
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    parts += _edges(wf, xy, marker)
    parts += _nodes(wf, xy, status)
    parts.append("</svg>")
    return "\n".join(parts)


def _edges(wf: Workflow, xy: dict[str, tuple[float, float]], marker: str) -> list[str]:
    names: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, dst, name in wf.edges:
        if src in xy and dst in xy:
            names[(src, dst)].append(name)
    out = ['<g class="flyte-edges" fill="none" stroke="#555" stroke-width="1.4">']
    for (src, dst), wired in names.items():
        x1, y1 = xy[src][0] + NODE_W / 2, xy[src][1] + NODE_H
        x2, y2 = xy[dst][0] + NODE_W / 2, xy[dst][1]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        if y2 > y1:
            bend = (y2 - y1) / 2
            d = f"M {x1:g} {y1:g} C {x1:g} {y1 + bend:g}, {x2:g} {y2 - bend:g}, {x2:g} {y2:g}"
        elif xy[src][1] == xy[dst][1]:  # inside the last (cycle) layer: a U below the row, bottom to bottom
            depth = V_GAP * (0.5 if x1 < x2 else 0.8)  # opposite directions must not overlap
            d = f"M {x1:g} {y1:g} C {x1:g} {y1 + depth:g}, {x2:g} {y1 + depth:g}, {x2:g} {y1:g}"
            mx, my = (x1 + x2) / 2, y1 + depth * 0.75
        else:  # an edge pointing up: loop around the side
            side = NODE_W * 0.75
            d = (f"M {x1:g} {y1:g} C {x1 + side:g} {y1 + V_GAP:g}, {x2 + side:g} {y2 - V_GAP:g}, "
                 f"{x2:g} {y2:g}")
        label = escape(", ".join(wired))
        out.append(f'<path d="{d}" marker-end="url(#{marker})" data-from="{escape(src)}" '
                   f'data-to="{escape(dst)}"><title>{label}</title></path>')
        # a white halo behind the label keeps it readable over crossing lines
        out.append(f'<text x="{mx:g}" y="{my:g}" text-anchor="middle" font-size="11" fill="#333" '
                   f'stroke="white" stroke-width="3" paint-order="stroke">{label}</text>')
    out.append("</g>")
    return out


def _nodes(wf: Workflow, xy: dict[str, tuple[float, float]], status: dict[str, str] | None) -> list[str]:
    states = ({name: status.get(name, "queued") for name in wf.tasks} if status is not None
              else diagnostic_state(wf))
    palette = STATUS_COLORS if status is not None else DIAGNOSTIC_COLORS
    notes: dict[str, list[str]] = defaultdict(list)
    for diag in wf.diagnostics:
        if diag.task is not None:
            notes[diag.task].append(f"{diag.severity}[{diag.code}]: {diag.message}")
    out = ['<g class="flyte-tasks">']
    for name, (x, y) in xy.items():
        task = wf.tasks[name]
        state = states[name]
        fill, stroke = palette.get(state, STATUS_COLORS["queued"])
        label = name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "…"
        sub = f"cell {task.cell}" + (f" · {state}" if status is not None else "")
        tip = "\n".join([f"{name} (cell {task.cell})", *notes[name]])
        out.append(
            f'<g class="flyte-task" data-task="{escape(name)}" data-state="{escape(state)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x:g}" y="{y:g}" width="{NODE_W}" height="{NODE_H}" rx="8" ry="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + NODE_W / 2:g}" y="{y + 19:g}" text-anchor="middle" font-weight="bold">'
            f"{escape(label)}</text>"
            f'<text x="{x + NODE_W / 2:g}" y="{y + 36:g}" text-anchor="middle" font-size="11" fill="#444">'
            f"{escape(sub)}</text></g>"
        )
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
    diagnostics (types as their text); the order is recomputed (Kahn).
    """
    from collections import deque

    from flyte_lab.graph.model import Param, Task, TaskOptions, TypeRef

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
    indegree = dict.fromkeys(tasks, 0)
    children: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in edges:
        children[a].append(b)
        indegree[b] += 1
    ready = deque(name for name, degree in indegree.items() if degree == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for child in children[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    diagnostics = [Diagnostic(**{k: d.get(k) for k in ("severity", "code", "message", "task", "cell", "line", "name")})
                   for d in graph.get("diagnostics", [])]
    return Workflow(path=path, tasks=tasks, edges=edges, diagnostics=diagnostics, order=order)
