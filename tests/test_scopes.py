"""Scope analysis behind `undefined-name` and `unassigned-output`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyte_lab.graph.scopes import analyse


def unbound(src: str, known: set[str] | None = None) -> list[str]:
    return [u.name for u in analyse(src, known or set()).unbound_reads]


@pytest.mark.parametrize("src", [
    "import os\nos.getcwd()",
    "from math import sqrt as s\ns(4)",
    "for i, (j, k) in enumerate([(1, 2)]):\n    print(i, j, k)",
    "with open('f') as fh, open('g') as (a):\n    fh, a",
    "try:\n    pass\nexcept Exception as e:\n    print(e)",
    "squares = [x * x for x in range(3)]\nsquares",
    "d = {k: v for k, v in {}.items()}",
    "def f(a, *args, b=1, **kw):\n    return a, args, b, kw, later\nlater = 1",
    "class K:\n    y = 1\n    z = [y]\n",
    "def g():\n    global made\n    made = 1\nmade",
    "if (n := 3) > 1:\n    print(n)",
    "lam = lambda q: q + 1",
    "match {'a': 1}:\n    case {'a': v, **rest}:\n        print(v, rest)\n"
    "    case [first, *others]:\n        print(first, others)",
    "x: int = 1\nx += 1",
    "print(len([]), get_ipython, display)",
])
def test_bound_names_are_not_reported(src: str) -> None:
    assert unbound(src) == []


@pytest.mark.parametrize(("src", "names"), [
    ("y = x + 1", ["x"]),
    ("def f():\n    return missing\n", ["missing"]),
    ("class K:\n    y = 1\n    def m(self):\n        return y\n", ["y"]),
    ("[i for i in range(3)]\nprint(i)", ["i"]),
    ("lam = lambda q: q + w", ["w"]),
])
def test_unbound_reads_are_reported(src: str, names: list[str]) -> None:
    assert unbound(src) == names


def test_known_names_count_as_bound() -> None:
    assert unbound("y = raw + pd.x", {"raw", "pd"}) == []


def test_only_module_level_assignments_count_as_outputs() -> None:
    report = analyse("a = 1\ndef f():\n    b = 2\nfor c in []: pass\n(d, e) = 1, 2")
    assert {"a", "c", "d", "e", "f"} <= report.bound and "b" not in report.bound


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[a-e]", fullmatch=True), min_size=1, max_size=6),
       st.lists(st.from_regex(r"[a-e]", fullmatch=True), max_size=6))
def test_reads_are_unbound_exactly_when_nothing_binds_them(assigned: list[str], read: list[str]) -> None:
    src = "\n".join(f"{name} = 1" for name in assigned) + "\n" + "\n".join(f"print({n})" for n in read)
    assert set(unbound(src)) == set(read) - set(assigned)
