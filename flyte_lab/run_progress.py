"""How far a run is: one definition for the widget, the sidebar (served with each run by the REST API) and the
dashboard's runs table, so all three show the same numbers for the same run.

Progress is the tasks finished successfully (`statuses.TASK_DONE`: succeeded, cached or reused) over all tasks. A failed
or skipped task is not progress: a failed run shows how far it got, never a full bar. A map-over task counts one
per element, as the driver's own progress does, once its element count is known: a workflow input's list from the
launch parameters, else the list manifest the task stored or its producer stored for it. Reading a manifest reads
JSON only (DESIGN.md 3, "Which process decodes what").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from flyte_lab.statuses import TASK_DONE

ListLength = Callable[[str], int]  # a stored list's URI -> its element count; raises when it is no manifest


def progress(tasks: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(done, total) of a run's tasks (the `show --json` `tasks`); `sizes`: element counts of map-over tasks."""
    sizes = sizes or {}
    done = total = 0
    for name, task in tasks.items():
        weight = max(int(sizes.get(name, 1)), 1)
        total += weight
        if task.get("status") in TASK_DONE:
            done += weight
    return done, total


def element_counts(run: Mapping[str, Any], graph: Mapping[str, Any], list_length: ListLength,
                   known: Mapping[str, int] | None = None) -> dict[str, int]:
    """Element counts of the run's map-over tasks, as far as they are known yet (`known`: found earlier)."""
    sizes = dict(known or {})
    tasks = run.get("tasks") or {}
    for entry in graph.get("tasks", []):
        name, over = entry["name"], (entry.get("options") or {}).get("map_over")
        if not over or name in sizes:
            continue
        own = next(iter((tasks.get(name) or {}).get("outputs", {}).values()), None)
        producer = next((a for a, b, n in graph.get("edges", []) if b == name and n == over), None)
        if producer is None:  # a workflow input: its value is known from the launch
            declared = (run.get("params") or {}).get(over, (graph.get("workflow_inputs") or {}).get(over, {})
                                                     .get("default"))
            if isinstance(declared, list):
                sizes[name] = len(declared)
                continue
        fed = ((tasks.get(producer) or {}).get("outputs") or {}).get(over) if producer else None
        for ref in (own, fed):
            if ref and ref.get("uri"):
                with contextlib.suppress(Exception):  # not a manifest (yet): the task counts as one for now
                    sizes[name] = list_length(ref["uri"])
                    break
    return sizes


def summary_sizes(summary: Mapping[str, Any], list_length: ListLength,
                  known: Mapping[str, int] | None = None) -> dict[str, int]:
    """`element_counts` of a `RunStore.run_summaries` element (which carries its graph only where a task maps over
    a list: a run without one reads nothing)."""
    graph = summary.get("graph")
    return element_counts(summary, graph, list_length, known) if graph else dict(known or {})


def manifest_lengths(home: str | None = None) -> ListLength:
    """`ListLength` over the artifact store of `home` (default: FLYTE_LAB_HOME), opened on first use only: a
    run without map-over outputs opens nothing."""
    opened: list[Any] = []

    def length(uri: str) -> int:
        if not opened:
            from flyte_lab.engine.artifacts import ArtifactStore

            opened.append(ArtifactStore.from_env(home))  # refuses to unpickle; manifests are JSON
        return len(opened[0].manifest_elements(uri))

    return length


def run_progress(run: Mapping[str, Any], graph: Mapping[str, Any], list_length: ListLength) -> dict[str, int]:
    """`{"done", "total"}` of a run, as the REST API serves it with each run."""
    done, total = progress(run.get("tasks") or {}, element_counts(run, graph, list_length))
    return {"done": done, "total": total}
