"""Topological order of a task graph, by the standard library's `graphlib`.

One definition for the graph builder (`Workflow.order`), the state machine's check of its plan and the
picture of a stored graph. Ready nodes come breadth first, in the order given, so an order is stable from
one validation to the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """`nodes` ordered so that every edge `(a, b)` puts `a` before `b`; nodes on or below a cycle are left out
    (the callers report them in their own words). Every edge's ends must be among `nodes`."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for node in nodes:
        sorter.add(node)  # first, so ready nodes keep the order given
    for a, b in edges:
        sorter.add(b, a)
    # graphlib sets the ready nodes before it looks for a cycle: what is not blocked by one is still ordered
    with contextlib.suppress(CycleError):
        sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorter.get_ready()
        order.extend(ready)
        sorter.done(*ready)
    return order
