"""The local cluster's worker: distributed's own, with its HTTP server (`/metrics`, `/health`) on loopback, and the
kernels of tasks Dask stops killed with them (`KernelsFollowTheirTasks`).

In-process (inproc) workers have no host address for distributed to bind their HTTP server to, so it binds
every interface (0.0.0.0 and ::); `LocalCluster` offers no way to set it without also starting the bokeh
dashboard. Imported by name (`engine/clusters.py`), only when a local cluster starts.
"""

from __future__ import annotations

from typing import Any

from distributed import Worker
from distributed.diagnostics.plugin import WorkerPlugin

LOOPBACK_HTTP = "127.0.0.1:0"


class LoopbackWorker(Worker):
    def __init__(self, *args: Any, dashboard_address: str | None = None, **kwargs: Any) -> None:
        plugins = (*kwargs.pop("plugins", ()), KernelsFollowTheirTasks())
        super().__init__(*args, dashboard_address=dashboard_address or LOOPBACK_HTTP, plugins=plugins, **kwargs)


class KernelsFollowTheirTasks(WorkerPlugin):
    """A task Dask stops while it executes (its driver's client went away: the driver was killed, the caller of
    a shared executor's run died) has its kernel killed at once, not left running the cell to its end: the run
    is resumed elsewhere, and the task must not run twice."""

    name = "flyte-lab-kernels-follow-their-tasks"

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start in ("executing", "long-running") and finish in ("cancelled", "released", "forgotten"):
            from flyte_lab.engine.worker.attempts import cancel_attempts

            cancel_attempts([str(key)])
