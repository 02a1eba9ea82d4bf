"""The local cluster's worker: distributed's own, with its HTTP server (`/metrics`, `/health`) on loopback.

In-process (inproc) workers have no host address for distributed to bind their HTTP server to, so it binds
every interface (0.0.0.0 and ::); `LocalCluster` offers no way to set it without also starting the bokeh
dashboard. Imported by name (`engine/clusters.py`), only when a local cluster starts.
"""

from __future__ import annotations

from typing import Any

from distributed import Worker

LOOPBACK_HTTP = "127.0.0.1:0"


class LoopbackWorker(Worker):
    def __init__(self, *args: Any, dashboard_address: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, dashboard_address=dashboard_address or LOOPBACK_HTTP, **kwargs)
