"""Panel's own server with the dashboard's two routes."""

from __future__ import annotations

from typing import Any

from flyte_lab.dashboard.run_page import run_page
from flyte_lab.dashboard.runs_page import runs_page

ROUTES = {"/": runs_page, "/run": run_page}


def server_options(address: str, port: int, origins: list[str] | None = None, **auth: Any) -> dict[str, Any]:
    """Keyword arguments for `panel.serve`: websocket origins (this address always), auth passed through."""
    allowed = [f"{address}:{port}", f"localhost:{port}", *(origins or [])]
    options: dict[str, Any] = {"address": address, "port": port, "websocket_origin": allowed, "show": False,
                               "title": {"/": "flyte_lab runs", "/run": "flyte_lab run"}}
    options.update({k: v for k, v in auth.items() if v is not None})
    return options


def serve(address: str = "127.0.0.1", port: int = 5006, origins: list[str] | None = None, *,
          threaded: bool = False, **auth: Any) -> Any:
    """Serve the dashboard; blocks unless `threaded` (then returns the server thread, `.stop()` ends it)."""
    import panel as pn

    return pn.serve(ROUTES, threaded=threaded, **server_options(address, port, origins, **auth))
