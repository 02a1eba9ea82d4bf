"""The SVG/HTML picture of a workflow: well-formed, one node per task, coloured, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.graph.model import Workflow
from flyte_lab.graph.validate import validate_notebook
from flyte_lab.presentation.graph_render import (
    DIAGNOSTIC_COLORS,
    STATUS_COLORS,
    cycle_members,
    layout,
    render_html,
    render_svg,
)

SVG = "{http://www.w3.org/2000/svg}"


def workflow(tmp_path: Path, *sources: str, name: str = "nb.ipynb") -> Workflow:
    path = tmp_path / name
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return validate_notebook(str(path))


def nodes(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)  # also proves the SVG is well-formed XML
    return {g.get("data-task"): g for g in root.iter(f"{SVG}g") if g.get("class") == "flyte-task"}


def fill(node: ET.Element) -> str | None:
    rect = node.find(f"{SVG}rect")
    assert rect is not None
    return rect.get("fill")


CHAIN = (
    "%%flyte_setup\nimport pandas as pd",
    "%%flyte_task make_data(n: int = 3) -> raw: pd.DataFrame\nraw = pd.DataFrame({'x': [1.0] * n})",
    "%%flyte_task fit(raw: pd.DataFrame) -> (coef: list[float], r2: float)\ncoef = [1.0]\nr2 = 0.5",
    "%%flyte_task report(coef: list[float], r2: float)\nprint(coef, r2)",
)


def test_clean_chain_is_green_with_labelled_edges(tmp_path: Path) -> None:
    wf = workflow(tmp_path, *CHAIN)
    assert not wf.diagnostics
    svg = render_svg(wf)
    found = nodes(svg)
    assert set(found) == {"make_data", "fit", "report"}
    assert {fill(n) for n in found.values()} == {DIAGNOSTIC_COLORS["ok"][0]}
    root = ET.fromstring(svg)
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "raw" in labels
    assert "coef, r2" in labels  # two wires between the same tasks share one edge
    assert "cell 2" in labels


def test_layers_follow_the_edges(tmp_path: Path) -> None:
    wf = workflow(tmp_path, *CHAIN)
    place = layout(wf)
    for src, dst, _ in wf.edges:
        assert place[src][0] < place[dst][0]


def test_colours_follow_diagnostics(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "%%flyte_task produce() -> count: str\ncount = '1'",
        "%%flyte_task consume(count: int) -> doubled: int\ndoubled = count * 2",
        "%%flyte_task needs(threshold: float)\nprint(threshold)",  # workflow input without value: warning
    )
    assert {d.code for d in wf.diagnostics} == {"type-mismatch", "missing-input"}
    found = nodes(render_svg(wf))
    assert fill(found["consume"]) == DIAGNOSTIC_COLORS["error"][0]
    assert fill(found["needs"]) == DIAGNOSTIC_COLORS["warning"][0]
    assert fill(found["produce"]) == DIAGNOSTIC_COLORS["ok"][0]
    assert found["consume"].get("data-state") == "error"


def test_colours_follow_run_status(tmp_path: Path) -> None:
    wf = workflow(tmp_path, *CHAIN)
    found = nodes(render_svg(wf, status={"make_data": "cached", "fit": "failed"}))
    assert fill(found["make_data"]) == STATUS_COLORS["cached"][0]
    assert fill(found["fit"]) == STATUS_COLORS["failed"][0]
    assert fill(found["report"]) == STATUS_COLORS["queued"][0]  # no status yet
    assert found["fit"].get("data-state") == "failed"


@pytest.mark.parametrize("status", sorted(STATUS_COLORS))
def test_every_status_has_its_own_colour(tmp_path: Path, status: str) -> None:
    wf = workflow(tmp_path, CHAIN[0], CHAIN[1])
    assert fill(nodes(render_svg(wf, status={"make_data": status}))["make_data"]) == STATUS_COLORS[status][0]
    assert len({fill for fill, _ in STATUS_COLORS.values()}) == len(STATUS_COLORS)


def test_text_is_escaped(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "%%flyte_setup\nfrom typing import Literal",
        "%%flyte_task produce() -> v: Literal['<b>&x']\nv = '<b>&x'",
        "%%flyte_task consume(v: int)\nprint(v)",
        name="a<b>&c.ipynb",
    )
    assert any("<b>&x" in d.message for d in wf.diagnostics)
    svg = render_svg(wf)
    assert "<b>" not in svg
    assert "&lt;b&gt;&amp;x" in svg  # in the tooltip of the failing task
    html = render_html(wf)
    assert "<b>" not in html
    assert "a&lt;b&gt;&amp;c.ipynb" in html
    ET.fromstring(html)  # the whole fragment stays well-formed


def test_html_lists_diagnostics_with_code_cell_and_line(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "%%flyte_task produce() -> count: str\ncount = '1'",
        "%%flyte_task consume(count: int)\nprint(count)",
    )
    html = render_html(wf)
    root = ET.fromstring(html)
    items = [li for li in root.iter("li")]
    assert len(items) == len(wf.diagnostics) == 1
    text = "".join(items[0].itertext())
    assert text.startswith("error[type-mismatch] cell 2, line 1: input `count: int` of task `consume`")
    assert "1 error" in html


def test_clean_html_says_so(tmp_path: Path) -> None:
    html = render_html(workflow(tmp_path, *CHAIN))
    assert "No diagnostics" in html
    assert "<ul" not in html


def test_cycle_renders_every_task(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "%%flyte_task alpha(y: int) -> x: int\nx = y",
        "%%flyte_task beta(x: int) -> y: int\ny = x",
        "%%flyte_task gamma(x: int)\nprint(x)",
        "%%flyte_task free() -> z: int\nz = 1",
    )
    assert any(d.code == "cycle" for d in wf.diagnostics)
    svg = render_svg(wf)
    found = nodes(svg)
    assert set(found) == {"alpha", "beta", "gamma", "free"}
    # the diagnostic names alpha only; the whole loop is red, what hangs below it is not
    assert fill(found["alpha"]) == fill(found["beta"]) == DIAGNOSTIC_COLORS["error"][0]
    assert fill(found["gamma"]) == fill(found["free"]) == DIAGNOSTIC_COLORS["ok"][0]
    assert cycle_members(wf) == {"alpha", "beta"}
    place = layout(wf)
    assert place["alpha"][0] == place["beta"][0] == place["gamma"][0] > place["free"][0]
    paths = [p for p in ET.fromstring(svg).iter(f"{SVG}path") if p.get("data-from")]
    assert len(paths) == 3


def test_empty_and_broken_notebooks_render(tmp_path: Path) -> None:
    assert nodes(render_svg(workflow(tmp_path, "x = 1"))) == {}
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    wf = validate_notebook(str(bad))
    html = render_html(wf)
    assert "bad-notebook" in html
    ET.fromstring(html)


def test_thousand_tasks(tmp_path: Path) -> None:
    chain = ["%%flyte_task t0() -> v0: int\nv0 = 0"]
    chain += [f"%%flyte_task t{i}(v{i - 1}: int) -> v{i}: int\nv{i} = v{i - 1} + 1" for i in range(1, 700)]
    chain += [f"%%flyte_task leaf{i}(v0: int)\nprint(v0)" for i in range(300)]
    wf = workflow(tmp_path, *chain)
    assert len(wf.tasks) == 1000
    svg = render_svg(wf)
    assert len(nodes(svg)) == 1000
    place = layout(wf)
    assert place["t699"][0] == 699
    assert sum(1 for layer, _ in place.values() if layer == 1) == 301  # t1 and the 300 leaves


def test_thousand_task_cycle(tmp_path: Path) -> None:
    ring = [f"%%flyte_task t{i}(v{(i - 1) % 1000}: int) -> v{i}: int\nv{i} = 1" for i in range(1000)]
    wf = workflow(tmp_path, *ring)
    assert wf.order == []
    assert len(cycle_members(wf)) == 1000
    found = nodes(render_svg(wf))
    assert len(found) == 1000
    assert {fill(n) for n in found.values()} == {DIAGNOSTIC_COLORS["error"][0]}
