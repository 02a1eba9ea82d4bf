"""Task selection for partial runs (`graph/selection.py`) on random DAGs (hypothesis), and its refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyte_lab.errors import SelectionRefused
from flyte_lab.graph.selection import Selection, needed_upstream, select_tasks

Dag = tuple[list[str], dict[str, list[str]]]


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    n = draw(st.integers(1, 15))
    order = [f"t{i}" for i in range(n)]
    upstream = {f"t{i}": sorted({f"t{j}" for j in draw(st.lists(st.integers(0, i - 1), max_size=3))}) if i else []
                for i in range(n)}
    return order, upstream


def _ancestors(name: str, upstream: dict[str, list[str]]) -> set[str]:
    """Reference definition by the edges' transitive closure, not by the module's walk."""
    found: set[str] = set()
    changed = True
    found_now = set(upstream[name])
    while changed:
        changed = False
        for task in list(found_now):
            if task not in found:
                found.add(task)
                found_now |= set(upstream[task])
                changed = True
    return found


def _closed_upstream(tasks: set[str], upstream: dict[str, list[str]]) -> bool:
    return all(set(upstream[t]) <= tasks for t in tasks)


@given(dags(), st.data())
def test_to_is_the_task_and_its_ancestors_and_from_its_descendants(dag: Dag, data: st.DataObject) -> None:
    order, upstream = dag
    task = data.draw(st.sampled_from(order))
    to = select_tasks(order, upstream, Selection(to_task=task))
    assert set(to) == _ancestors(task, upstream) | {task}
    assert to == [t for t in order if t in to]  # in the graph's order
    frm = set(select_tasks(order, upstream, Selection(from_task=task)))
    assert frm == {t for t in order if t == task or task in _ancestors(t, upstream)}
    assert needed_upstream(order, upstream, to) == []


@given(dags(), st.data())
def test_from_and_to_is_the_path_between(dag: Dag, data: st.DataObject) -> None:
    order, upstream = dag
    a = data.draw(st.sampled_from(order))
    b = data.draw(st.sampled_from(order))
    sel = Selection(from_task=a, to_task=b)
    if a != b and a not in _ancestors(b, upstream):
        with pytest.raises(SelectionRefused, match=f"`{b}` is not downstream of `{a}`"):
            select_tasks(order, upstream, sel)
        return
    path = set(select_tasks(order, upstream, sel))
    assert {a, b} <= path
    for t in path - {a, b}:
        assert a in _ancestors(t, upstream) and t in _ancestors(b, upstream)


@given(dags(), st.data())
def test_a_selection_and_what_it_needs_are_closed_upstream(dag: Dag, data: st.DataObject) -> None:
    order, upstream = dag
    only = data.draw(st.lists(st.sampled_from(order), min_size=1, unique=True))
    selected = select_tasks(order, upstream, Selection(only=tuple(only)))
    assert set(selected) == set(only)
    needed = needed_upstream(order, upstream, selected)
    assert not set(needed) & set(selected)
    assert _closed_upstream(set(selected) | set(needed), upstream)
    assert set(needed) == set().union(*(_ancestors(t, upstream) for t in only)) - set(only)


def test_no_selection_is_every_task() -> None:
    assert select_tasks(["a", "b"], {"a": [], "b": ["a"]}, Selection()) == ["a", "b"]


@pytest.mark.parametrize(("sel", "message"), [
    (Selection(only=("a", "zz")), "--only zz: the notebook has no task `zz`"),
    (Selection(from_task="zz"), "--from zz: the notebook has no task `zz`"),
    (Selection(to_task="q"), "--to q: the notebook has no task `q`"),
])
def test_unknown_tasks_are_refused_naming_the_option(sel: Selection, message: str) -> None:
    with pytest.raises(SelectionRefused, match=message):
        select_tasks(["a", "b"], {"a": [], "b": ["a"]}, sel)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"only": "a", "from_task": "b"}, "--only cannot be combined with --from"),
    ({"only": "a", "to_task": "b"}, "--only cannot be combined with --to"),
    ({"only": ""}, "--only : expected task names"),
    ({"only": "a,,b"}, "--only a,,b: expected task names"),
    ({"from_task": " "}, "--from: expected a task name"),
])
def test_bad_option_values_are_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(SelectionRefused, match=message):
        Selection.parse(**kwargs)


def test_parse_splits_commas_and_keeps_the_json_form() -> None:
    sel = Selection.parse(only=["c, d", "c"])
    assert sel.only == ("c", "d")
    assert Selection.from_json(sel.as_json()) == sel
    assert sel.describe() == "--only c,d"
