"""The dashboard's two routes: on Panel's own server (`flyte-lab dashboard`), or mounted in another Tornado server
(the Jupyter server's, `flyte_lab/server/dashboard.py`) under a prefix."""

from __future__ import annotations

import secrets
import socket
from typing import Any

from flyte_lab.dashboard.run_page import run_page
from flyte_lab.dashboard.runs_page import runs_page
from flyte_lab.errors import UserInputError

ROUTES = {"/": runs_page, "/run": run_page}
TITLES = {"/": "flyte_lab runs", "/run": "flyte_lab run"}


def server_options(address: str, port: int, origins: list[str] | None = None, **auth: Any) -> dict[str, Any]:
    """Keyword arguments for `panel.serve`: websocket origins (this address always), auth passed through."""
    allowed = [f"{address}:{port}", f"localhost:{port}", *(origins or [])]
    options: dict[str, Any] = {"address": address, "port": port, "websocket_origin": allowed, "show": False,
                               "title": TITLES}
    options.update({k: v for k, v in auth.items() if v is not None})
    return options


def _chosen_port(address: str, port: int) -> int:
    """`port`, or for 0 a free one: the websocket origins must name the real port before Bokeh binds it."""
    if port:
        return port
    family, kind, proto, _, sockaddr = socket.getaddrinfo(address, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(sockaddr)
        return int(probe.getsockname()[1])


def bind(address: str = "127.0.0.1", port: int = 5006, origins: list[str] | None = None, **auth: Any) -> Any:
    """The dashboard's server, listening but not serving yet (`.port` is the real port; `.start()` and then
    `.io_loop.start()` serve); a port that cannot be bound is one line."""
    import panel as pn

    port = _chosen_port(address, port)
    try:
        return pn.serve(ROUTES, start=False, **server_options(address, port, origins, **auth))
    except OSError as err:
        raise UserInputError(f"the dashboard cannot listen on {address}:{port} ({err.strerror or err})") from None


def serve(address: str = "127.0.0.1", port: int = 5006, origins: list[str] | None = None, *,
          threaded: bool = False, **auth: Any) -> Any:
    """Serve the dashboard; blocks unless `threaded` (then returns the server thread, `.stop()` ends it)."""
    import panel as pn

    options = server_options(address, _chosen_port(address, port), origins, **auth)
    return pn.serve(ROUTES, threaded=threaded, **options)


def mount(prefix: str) -> Any:
    """The dashboard as a Bokeh Tornado application answering URLs under `prefix`, started on the current IOLoop
    but listening nowhere: the server it is mounted in hands it the requests it has authenticated (`.stop()`
    ends its sessions' callbacks).

    That server checks each websocket's origin itself (Jupyter's rule: the page's own host, or its
    `allow_origin`), so Bokeh's own list admits any; sessions are signed with a key of this process, so a
    websocket can only join a session a page of this server made.
    """
    from bokeh.server.tornado import BokehTornado
    from panel.io.application import build_applications
    from panel.io.server import get_static_routes
    from tornado.ioloop import IOLoop

    routes: dict[str, Any] = dict(ROUTES)
    app = BokehTornado(build_applications(routes, title=TITLES), prefix=prefix, use_index=False,
                       extra_patterns=get_static_routes({}),  # Panel's component resources (Tabulator's JS)
                       extra_websocket_origins=["*"], secret_key=secrets.token_bytes(32), sign_sessions=True)
    app.initialize(IOLoop.current())
    app.start()
    return app
