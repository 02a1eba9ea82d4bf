"""The dashboard inside Jupyter: `{base_url}flyte-lab/dashboard/` (the runs page) and `.../run?id=RUN_ID`.

Every request, the websocket's included, is first a `JupyterHandler`'s: Jupyter's token or login cookie, its
host check and, for a websocket, its origin rule. Only then is it handed to the dashboard's Bokeh application,
mounted in this process on the server's IOLoop (no port of its own, so nothing new listens). Panel is imported
on the first request, in a thread (it takes seconds), so Jupyter starts as fast as without the dashboard; the
pages read the server's store (`store.shared`, the REST API's).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any
from urllib.parse import parse_qsl, urlencode

import tornado.web
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado.httputil import RequestStartLine

PATH = "flyte-lab/dashboard"


class MountedDashboard:
    """The dashboard's application under `prefix`: built once, by the first request that needs it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._built: asyncio.Future[Any] | None = None

    async def app(self) -> Any:
        if self._built is None or (self._built.done() and self._built.exception() is not None):
            self._built = asyncio.ensure_future(self._build())  # a failed build is tried again by the next request
        return await asyncio.shield(self._built)  # a request that goes away does not cancel it for the others

    async def _build(self) -> Any:
        server = await asyncio.get_running_loop().run_in_executor(
            None, importlib.import_module, "flyte_lab.dashboard.server")
        return server.mount(self.prefix)

    def stop(self) -> None:
        if self._built is not None and self._built.done() and self._built.exception() is None:
            self._built.result().stop()


class DashboardHandler(ExtensionHandlerMixin, JupyterHandler):
    def _websocket(self) -> bool:
        return self.request.headers.get("Upgrade", "").lower() == "websocket"

    async def prepare(self, *, _redirect_to_login: bool = True) -> None:  # type: ignore[override]
        await super().prepare(_redirect_to_login=_redirect_to_login and not self._websocket())
        if self._websocket() and not self.current_user:
            # a websocket cannot follow a redirect to the login page: refused, as Jupyter's own are
            raise tornado.web.HTTPError(403, "the dashboard's websocket needs Jupyter's token or login cookie")

    @tornado.web.authenticated
    async def get(self, _path: str | None = None) -> None:
        if self._websocket() and not self.check_origin():
            raise tornado.web.HTTPError(403, "the dashboard's websocket is opened only from Jupyter's own pages")
        if not self._websocket() and self.get_query_argument("token", None) is not None:
            # the login cookie Jupyter sets for a token in the URL leaves with this redirect (the dashboard's own
            # answer would drop it), so the page's resources and websocket are authenticated without the token
            kept = [(k, v) for k, v in parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
            self.redirect(self.request.path + (f"?{urlencode(kept)}" if kept else ""))
            return
        app = await self.settings["flyte_lab_dashboard"].app()
        # the dashboard's own handler answers this request (a page, a resource, or its websocket) from here on
        self._auto_finish = False
        delegate = app.find_handler(self.request)
        delegate.headers_received(RequestStartLine(self.request.method, self.request.uri, self.request.version),
                                  self.request.headers)
        delegate.finish()


ROUTES: list[tuple[str, type[DashboardHandler]]] = [(rf"/{PATH}(/.*)?", DashboardHandler)]
