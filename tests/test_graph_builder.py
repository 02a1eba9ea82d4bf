"""The graph builder on random DAGs (hypothesis) and the type rules."""

from __future__ import annotations

import itertools

import nbformat
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.graph.builder import build
from flyte_lab.graph.notebook_reader import classify
from flyte_lab.graph.topo_order import topological_order
from flyte_lab.graph.type_names import TypeScope
from flyte_lab.graph.type_rules import mismatch


def _workflow(edges: dict[int, list[int]], n: int):  # type: ignore[no-untyped-def]
    nb = new_notebook()
    cells = []
    for i in range(n):
        ins = ", ".join(f"o{j}: int" for j in sorted(set(edges.get(i, []))))
        reads = " + ".join(f"o{j}" for j in sorted(set(edges.get(i, [])))) or "0"
        cells.append(new_code_cell(f"%%flyte_task t{i}({ins}) -> o{i}: int\no{i} = {reads} + 1"))
    nb.cells = cells
    return build("random.ipynb", classify(nb))


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, dict[int, list[int]]]:
    n = draw(st.integers(1, 25))
    edges: dict[int, list[int]] = {}
    for i in range(1, n):
        edges[i] = draw(st.lists(st.integers(0, i - 1), max_size=3))
    # shuffle the cell order so notebook order is not already topological
    return n, edges


@settings(max_examples=150, deadline=None)
@given(dags(), st.randoms())
def test_random_dags_give_a_valid_topological_order(dag: tuple[int, dict[int, list[int]]], rnd) -> None:  # type: ignore[no-untyped-def]
    n, edges = dag
    perm = list(range(n))
    rnd.shuffle(perm)
    relabeled = {perm[i]: [perm[j] for j in deps] for i, deps in edges.items()}
    wf = _workflow(relabeled, n)
    assert wf.diagnostics == []
    position = {name: k for k, name in enumerate(wf.order)}
    assert sorted(position) == sorted(f"t{i}" for i in range(n))
    for a, b, _ in wf.edges:
        assert position[a] < position[b]


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_a_random_back_edge_is_reported_as_a_cycle_with_its_path(dag, data) -> None:  # type: ignore[no-untyped-def]
    n, edges = dag
    # an edge a -> b exists (b consumes a's output); add the back edge b -> a
    pairs = [(j, i) for i, deps in edges.items() for j in deps]
    assume(pairs)
    a, b = data.draw(st.sampled_from(pairs))
    edges.setdefault(a, []).append(b)
    wf = _workflow(edges, n)
    cycles = [d for d in wf.diagnostics if d.code == "cycle"]
    assert cycles, wf.diagnostics
    path = cycles[0].message.split("cycle ", 1)[1].split(";")[0].split(" -> ")
    assert path[0] == path[-1]
    wired = {(x, y) for x, y, _ in wf.edges}
    for x, y in itertools.pairwise(path):
        assert (x, y) in wired
    # every cycle must use the new edge
    assert f"t{a}" in path and f"t{b}" in path


def test_long_chains_build_without_recursion() -> None:
    # iterative algorithms throughout: a 2,000-task chain must not hit the recursion limit
    wf = _workflow({i: [i - 1] for i in range(1, 2000)}, 2000)
    assert len(wf.edges) == 1999 and len(wf.order) == 2000


SCOPE = TypeScope.from_sources([
    "import pandas as pd\nimport numpy as np\nfrom typing import Any, Optional, Union\nimport datetime\n"
    "from dataclasses import dataclass\n@dataclass\nclass Point:\n    x: int\n"
    "from enum import Enum\nclass Color(Enum):\n    RED = 1\n"
])


@pytest.mark.parametrize(("produced", "consumed", "ok"), [
    ("int", "int", True),
    ("int", "float", False),
    ("bool", "int", False),
    ("int", "Optional[int]", True),
    ("int", "int | None", True),
    ("None", "Optional[int]", True),
    ("Optional[int]", "int", False),
    ("int", "Any", True),
    ("list[int]", "list[int]", True),
    ("list[int]", "list[float]", False),
    ("dict[str, list[int]]", "dict[str, list[int]]", True),
    ("dict[str, list[int]]", "dict[str, list[str]]", False),
    ("tuple[int, str]", "tuple[int, str]", True),
    ("tuple[int, str]", "tuple[str, int]", False),
    ("pd.DataFrame", "pd.DataFrame", True),
    ("pd.DataFrame", "np.ndarray", False),
    ("Point", "Point", True),
    ("Point", "Color", False),
    ("datetime.datetime", "datetime.date", False),
    ("int", "Union[int, str]", True),
    ("Union[int, str]", "int", False),
    ("list", "list[int]", True),
])
def test_type_rules(produced: str, consumed: str, ok: bool) -> None:
    assert (mismatch(SCOPE.resolve(produced), SCOPE.resolve(consumed)) is None) is ok


def test_aliases_resolve_to_qualified_names() -> None:
    assert SCOPE.resolve("pd.DataFrame").name == "pandas.DataFrame"
    assert SCOPE.resolve("Point").defined_as == "dataclass"
    assert SCOPE.resolve("Color").defined_as == "enum"
    assert SCOPE.resolve("typing.List[int]" if False else "list[int]").canonical() == "list[int]"


def test_notebook_order_is_kept_for_independent_tasks() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [new_code_cell(f"%%flyte_task t{i}() -> o{i}: int\no{i} = 1") for i in range(5)]
    assert build("x.ipynb", classify(nb)).order == [f"t{i}" for i in range(5)]


def _codes(wf, code: str) -> list[tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return [(d.task, d.name) for d in wf.diagnostics if d.code == code]


@pytest.mark.parametrize("header", [
    "%%flyte_task broken(xs: list[int] -> total: int",  # unclosed `(`: recovered leniently
    "%%flyte_task broken(xs: list[int]) -> total: Nowhere",  # unknown type: the header parsed
    "%%flyte_task broken(xs: list[int]) -> total --retries x",  # no type, bad option
])
@pytest.mark.parametrize("launching", [False, True])
def test_a_broken_header_does_not_turn_its_outputs_into_missing_inputs(header: str, launching: bool) -> None:
    nb = new_notebook(cells=[
        new_code_cell("%%flyte_task make() -> xs: list[int]\nxs = [1]"),
        new_code_cell(f"{header}\ntotal = sum(xs)"),
        new_code_cell("%%flyte_task report(total: int, other: int)\nprint(total, other)"),
    ])
    wf = build("broken.ipynb", classify(nb), launching=launching)
    assert [d.cell for d in wf.diagnostics if d.code == "bad-header"][:1] == [2]
    # `other` is a real workflow input without a value; `total` is the broken task's output
    assert _codes(wf, "missing-input") == [("report", "other")]
    assert set(wf.workflow_inputs) == {"other"} and wf.broken_outputs == {"total": 2}


def test_a_broken_header_whose_outputs_cannot_be_read_silences_missing_inputs() -> None:
    nb = new_notebook(cells=[
        new_code_cell("%%flyte_task broken() -> 123\ntotal = 1"),
        new_code_cell("%%flyte_task report(total: int)\nprint(total)"),
    ])
    wf = build("unreadable.ipynb", classify(nb), launching=True)
    assert _codes(wf, "bad-header") and not _codes(wf, "missing-input")
    assert "total" in wf.workflow_inputs  # it may be one: that is known once the header is fixed


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_breaking_any_header_leaves_no_follow_on_missing_input(dag, data) -> None:  # type: ignore[no-untyped-def]
    n, edges = dag
    nb = new_notebook()
    broken = data.draw(st.integers(0, n - 1))
    how = data.draw(st.sampled_from(["unclosed", "unknown-type", "duplicate"]))
    for i in range(n):
        ins = ", ".join(f"o{j}: int" for j in sorted(set(edges.get(i, []))))
        header = f"%%flyte_task t{i}({ins}) -> o{i}: int"
        if i == broken:
            header = {"unclosed": f"%%flyte_task t{i}({ins} -> o{i}: int",
                      "unknown-type": f"%%flyte_task t{i}({ins}) -> o{i}: Nowhere",
                      "duplicate": f"%%flyte_task t{(i + 1) % n if n > 1 else 'x'}({ins}) -> o{i}: int"}[how]
        nb.cells.append(new_code_cell(f"{header}\no{i} = 1"))
    wf = build("random.ipynb", classify(nb), launching=True)
    assert _codes(wf, "bad-header") or (how == "duplicate" and n == 1)
    assert _codes(wf, "missing-input") == []
    assert f"o{broken}" not in wf.workflow_inputs


def test_the_order_leaves_out_what_a_cycle_blocks_and_orders_the_rest_breadth_first() -> None:
    # `b -> c -> b` blocks `c`, `b` and `d` below them; the others come level by level, in the order given
    nodes = ["e", "a", "b", "c", "d", "f"]
    edges = [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d"), ("a", "f"), ("e", "f")]
    assert topological_order(nodes, edges) == ["e", "a", "f"]
    assert topological_order(nodes, [e for e in edges if e != ("c", "b")]) == ["e", "a", "b", "f", "c", "d"]
