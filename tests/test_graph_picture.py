"""The one graph picture: edges routed around boxes, one label per edge, inputs and bad headers as nodes."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.graph.model import Workflow
from flyte_lab.graph.validate import graph_json, validate_notebook
from flyte_lab.presentation.graph_render import render_svg, workflow_from_graph_json
from tests.conftest import EXAMPLES

SVG = "{http://www.w3.org/2000/svg}"
Box = tuple[float, float, float, float]


def boxes(root: ET.Element) -> dict[str, Box]:
    out = {}
    for g in root.iter(f"{SVG}g"):
        key = g.get("data-task") or (g.get("data-input") and f"input:{g.get('data-input')}") or (
            g.get("data-cell") and f"bad:{g.get('data-cell')}")
        rect = g.find(f"{SVG}rect")
        if key and rect is not None:
            x, y, w, h = (float(rect.get(k, 0)) for k in ("x", "y", "width", "height"))
            out[key] = (x, y, x + w, y + h)
    return out


def sample(d: str) -> list[tuple[float, float]]:
    """Points along an SVG path made of M, C and L commands."""
    tokens = re.findall(r"[MCL]|-?\d+(?:\.\d+)?(?:e-?\d+)?", d)
    points: list[tuple[float, float]] = []
    i, here = 0, (0.0, 0.0)
    while i < len(tokens):
        op = tokens[i]
        if op == "M":
            here = (float(tokens[i + 1]), float(tokens[i + 2]))
            i += 3
        elif op == "L":
            end = (float(tokens[i + 1]), float(tokens[i + 2]))
            points += [(here[0] + (end[0] - here[0]) * t / 20, here[1] + (end[1] - here[1]) * t / 20)
                       for t in range(21)]
            here, i = end, i + 3
        else:
            c = [float(v) for v in tokens[i + 1:i + 7]]
            p = [here, (c[0], c[1]), (c[2], c[3]), (c[4], c[5])]
            for step in range(41):
                t = step / 40
                u = 1 - t
                points.append((sum(w * q[0] for w, q in zip((u**3, 3*u*u*t, 3*u*t*t, t**3), p, strict=True)),
                               sum(w * q[1] for w, q in zip((u**3, 3*u*u*t, 3*u*t*t, t**3), p, strict=True))))
            here, i = p[3], i + 7
    return points


def inside(point: tuple[float, float], box: Box, pad: float = 1.0) -> bool:
    return box[0] + pad < point[0] < box[2] - pad and box[1] + pad < point[1] < box[3] - pad


def check_routing(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    found = boxes(root)
    for path in root.iter(f"{SVG}path"):
        src, dst = path.get("data-from"), path.get("data-to")
        if not src:
            continue
        for point in sample(path.get("d", "")):
            for key, box in found.items():
                if key not in (src, dst):
                    assert not inside(point, box), f"edge {src} -> {dst} passes under {key} at {point}"
    return root


def label_positions(root: ET.Element) -> dict[str, tuple[float, float]]:
    group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "flyte-edge-labels")
    return {t.text or "": (float(t.get("x", 0)), float(t.get("y", 0))) for t in group.iter(f"{SVG}text")}


def nearest_edge(root: ET.Element, point: tuple[float, float]) -> tuple[str, str]:
    best: tuple[float, tuple[str, str]] = (1e18, ("", ""))
    for path in root.iter(f"{SVG}path"):
        if path.get("data-from"):
            gap = min((px - point[0]) ** 2 + (py - point[1] + 4) ** 2 for px, py in sample(path.get("d", "")))
            best = min(best, (gap, (path.get("data-from", ""), path.get("data-to", ""))))
    return best[1]


def test_quickstart_edges_go_around_boxes_and_each_label_sits_on_its_edge() -> None:
    wf = validate_notebook(str(EXAMPLES / "quickstart.ipynb"))
    root = check_routing(render_svg(wf))
    labels = label_positions(root)
    assert nearest_edge(root, labels["dropped"]) == ("clean", "summarize")  # not on features -> fit
    for (src, dst, name) in wf.edges:
        text = next(t for t in labels if name in t.split(", "))
        assert nearest_edge(root, labels[text]) == (src, dst)
    for (a, pa), (b, pb) in itertools.combinations(labels.items(), 2):
        assert abs(pa[0] - pb[0]) > 30 or abs(pa[1] - pb[1]) > 12, f"labels {a} and {b} overlap"


def test_workflow_inputs_are_nodes_and_options_show(tmp_path: Path) -> None:
    wf = validate_notebook(str(EXAMPLES / "fanout_retries_cache.ipynb"))
    root = check_routing(render_svg(wf))
    found = boxes(root)
    for name in wf.workflow_inputs:
        assert f"input:{name}" in found
    badges = " ".join(t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "flyte-badges")
    mapped = [t for t in wf.tasks.values() if t.options.map_over]
    assert mapped and f"map-over {mapped[0].options.map_over}" in badges
    assert any(t.options.cache for t in wf.tasks.values()) and "cache" in badges


def bad_header_workflow(folder: Path, consumer: str) -> Workflow:
    """make -> broken (its header misses a `)`), then the cell `consumer`."""
    path = folder / "bad.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_task make() -> xs: list[int]\nxs = [1]"),
        new_code_cell("%%flyte_task broken(xs: list[int] -> total: int\ntotal = sum(xs)"),
        new_code_cell(consumer),
    ]), path)
    return validate_notebook(str(path))


def test_a_bad_header_stays_in_the_picture_in_red(tmp_path: Path) -> None:
    wf = bad_header_workflow(tmp_path, "%%flyte_task report(xs: list[int])\nprint(xs)")
    root = ET.fromstring(render_svg(wf))
    bad = [g for g in root.iter(f"{SVG}g") if g.get("class") == "flyte-bad-header"]
    assert [g.get("data-cell") for g in bad] == ["2"]
    assert "bad-header" in (bad[0].findtext(f"{SVG}title") or "")
    assert "cell 2: bad header" in "".join(bad[0].itertext())


def test_a_bad_header_feeds_its_consumers_from_its_red_node(tmp_path: Path) -> None:
    wf = bad_header_workflow(tmp_path, "%%flyte_task report(total: int)\nprint(total)")
    root = check_routing(render_svg(wf))
    found = boxes(root)
    assert "input:total" not in found  # not a workflow input: the output of the broken header
    wired = {(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG}path") if p.get("data-from")}
    assert ("bad:2", "report") in wired
    assert found["bad:2"][3] < found["report"][1]  # drawn above its consumer


def test_stored_graph_draws_the_same_nodes() -> None:
    wf = validate_notebook(str(EXAMPLES / "quickstart.ipynb"))
    again = workflow_from_graph_json(graph_json(wf), wf.path)
    assert boxes(ET.fromstring(render_svg(again))).keys() == boxes(ET.fromstring(render_svg(wf))).keys()


def test_long_edges_in_a_wide_graph_never_cross_a_box(tmp_path: Path) -> None:
    cells = ["%%flyte_task src() -> (a: int, b: int)\na = 1\nb = 2"]
    cells += [f"%%flyte_task mid{i}(a: int) -> m{i}: int\nm{i} = a" for i in range(5)]
    cells += [f"%%flyte_task deep{i}(m{i}: int) -> d{i}: int\nd{i} = m{i}" for i in range(5)]
    cells += ["%%flyte_task sink(b: int, d0: int, d4: int, a: int)\nprint(b, d0, d4, a)"]
    path = tmp_path / "wide.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), path)
    check_routing(render_svg(validate_notebook(str(path))))
