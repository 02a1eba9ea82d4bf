"""Runs on the Dask scheduler (sent by value with cloudpickle, so the scheduler needs nothing of flyte_lab).

Keep it self-contained: no flyte_lab imports.
"""

from __future__ import annotations

from typing import Any

WANTING = ("released", "waiting", "no-worker", "queued", "processing")


def demand_by_resource(dask_scheduler: Any = None, prefix: str = "flyte-profile-") -> dict[str, int]:
    """How many unfinished tasks ask for each resource whose name starts with `prefix`."""
    counts: dict[str, int] = {}
    for ts in dask_scheduler.tasks.values():
        if ts.state not in WANTING or not ts.resource_restrictions:
            continue
        for name in ts.resource_restrictions:
            if name.startswith(prefix):
                counts[name] = counts.get(name, 0) + 1
    return counts
