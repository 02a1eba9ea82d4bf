"""The REST handlers of DESIGN.md section 3b; `ROUTES` below is the one route table.

Every handler is behind Jupyter's authentication (`@tornado.web.authenticated`; `APIHandler` checks
XSRF on cookie-authenticated writes), every notebook path goes through `paths.resolve_notebook`, every
run or schedule named in a URL is confined to the root by `answers`, and every error goes through
its own `http_status` (`errors.status_for`). Store and graph calls run in a thread (they block).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel

from flyte_lab.server import service
from flyte_lab.server.errors import BadRequest, body_for, status_for
from flyte_lab.server.models import (
    MAX_BODY_DEPTH,
    CancelAnswer,
    CancelRequest,
    GraphRequest,
    RelaunchRequest,
    ResumeRequest,
    RunCreated,
    RunRequest,
    SelectBody,
    too_deep,
)
from flyte_lab.server.paths import resolve_notebook
from flyte_lab.statuses import CancelSource, vocabulary

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def answers(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Authenticated, confined to the root, and every exception answered through the status table.

    A route whose URL names a run (`run_id`) or a schedule (`name`) acts only on one whose notebook lies
    under the root: the check is made here, once for every such route, before its handler runs.
    """

    @tornado.web.authenticated
    @functools.wraps(method)
    async def wrapper(self: FlyteHandler, *args: Any, **kwargs: Any) -> None:
        try:
            self.launcher.warm_up()  # the sidebar's first request: the first Run finds the template ready
            if "run_id" in kwargs:
                self.run = await self.blocking(service.confined_run, self.root_dir, kwargs["run_id"])
            if "name" in kwargs:
                await self.blocking(service.confined_schedule, self.root_dir, kwargs["name"])
            await method(self, *args, **kwargs)
        except Exception as exc:
            status = status_for(exc)
            if status >= 500:
                self.log.error("flyte_lab: %s %s failed", self.request.method, self.request.path, exc_info=exc)
            self.set_status(status)
            self.finish(json.dumps(body_for(exc)))

    return wrapper  # type: ignore[return-value]  # tornado's decorator types drop the coroutine


class FlyteHandler(ExtensionHandlerMixin, APIHandler):
    run: dict[str, Any]  # on routes of one run: its `show --json` object, set by `answers` once confined

    @property
    def root_dir(self) -> str:
        return str(self.settings["server_root_dir"])

    @property
    def launcher(self) -> Any:
        return self.settings["flyte_lab_launcher"]

    def body(self, model: type[M]) -> M:
        return model.model_validate(self.json_body())

    def json_body(self) -> Any:
        deep = BadRequest(f"the request body nests lists or objects deeper than {MAX_BODY_DEPTH} levels")
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        except RecursionError:  # the parser recurses once per `[` or `{`
            raise deep from None
        if too_deep(data):
            raise deep
        return data

    def arg(self, name: str) -> str:
        value = self.get_query_argument(name, None)
        if value is None:
            raise BadRequest(f"missing query argument `{name}`")
        return value

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data.model_dump() if isinstance(data, BaseModel) else data, default=str))


class ConfigHandler(FlyteHandler):
    @answers
    async def get(self) -> None:
        self.reply({"dashboard_url": self.settings.get("flyte_lab_dashboard_url"),
                    "schedule_spec": service.schedule_spec(), "statuses": vocabulary()})


class GraphHandler(FlyteHandler):
    @answers
    async def get(self) -> None:
        path = resolve_notebook(self.root_dir, self.arg("path"))
        self.reply(await self.blocking(service.graph_of_file, path))

    @answers
    async def post(self) -> None:
        req = self.body(GraphRequest)
        path = resolve_notebook(self.root_dir, req.path, must_exist=False)
        self.reply(await self.blocking(service.graph_of_content, path, req.content, req.params))


class RunsHandler(FlyteHandler):
    @answers
    async def get(self) -> None:
        rel = self.get_query_argument("path", None)
        notebook = str(resolve_notebook(self.root_dir, rel, must_exist=False)) if rel else None
        self.reply(await self.blocking(service.list_runs, self.root_dir, notebook))

    @answers
    async def post(self) -> None:
        req = self.body(RunRequest)
        path = resolve_notebook(self.root_dir, req.path)
        await self.blocking(service.check_launch, path, req.params)  # 400 with diagnostics, nothing stored
        run_id = await self.launcher.start({"action": "run", "path": str(path), "params": req.params,
                                            "cluster": req.cluster, "workers": req.workers,
                                            "no_cache": req.no_cache, "reuse": req.reuse,
                                            "allow_changed": req.allow_changed,
                                            "select": SelectBody.request(req.select)})
        self.reply(RunCreated(run_id=run_id), 201)


class RunHandler(FlyteHandler):
    @answers
    async def get(self, run_id: str) -> None:
        self.reply(await self.blocking(service.with_progress, self.run))


class ResumeHandler(FlyteHandler):
    @answers
    async def post(self, run_id: str) -> None:
        req = self.body(ResumeRequest)
        started = await self.launcher.start({"action": "resume", "run_id": self.run["run_id"],
                                             "cluster": req.cluster})
        self.reply(RunCreated(run_id=started), 202)


class RelaunchHandler(FlyteHandler):
    @answers
    async def post(self, run_id: str) -> None:
        req = self.body(RelaunchRequest)  # an unknown field is refused, not ignored
        # the selection is checked where it is used (the launched process): a refusal comes back as its one line
        started = await self.launcher.start({"action": "relaunch", "run_id": self.run["run_id"],
                                             "select": SelectBody.request(req.select)})
        self.reply(RunCreated(run_id=started), 201)


class CancelHandler(FlyteHandler):
    @answers
    async def post(self, run_id: str) -> None:
        by = self.body(CancelRequest).by
        full_id, state = await self.blocking(service.cancel, self.run["run_id"], CancelSource(by))
        self.reply(CancelAnswer(run_id=full_id, state=state), 202)


class TaskNotebookHandler(FlyteHandler):
    @answers
    async def get(self, run_id: str, task: str) -> None:
        self.reply(await self.blocking(service.executed_notebook, self.run, task))


class TaskLogHandler(FlyteHandler):
    @answers
    async def get(self, run_id: str, task: str) -> None:
        since = self.get_query_argument("since", "0")
        # ASCII digits only (`"²".isdigit()`), and few enough for SQLite's 64-bit integers: else a 500
        if not (since.isascii() and since.isdigit() and len(since) <= 18):
            raise BadRequest(f"`since` must be a line id (a whole number >= 0), got `{since[:40]}`")
        # the task's state as `answers` read it, before the lines: a reader told "ended" has every line
        self.reply(await self.blocking(service.task_log, self.run, task, int(since)))


class SchedulesHandler(FlyteHandler):
    @answers
    async def get(self) -> None:
        rel = self.get_query_argument("path", None)
        notebook = str(resolve_notebook(self.root_dir, rel, must_exist=False)) if rel else None
        self.reply(await self.blocking(service.list_schedules, self.root_dir, notebook, datetime.now(UTC)))

    @answers
    async def post(self) -> None:
        body = self.json_body()  # the schedule spec: checked (and its path confined) by `service.add_schedule`
        self.reply(await self.blocking(service.add_schedule, self.root_dir, body, datetime.now(UTC)), 201)


class ScheduleHandler(FlyteHandler):
    @answers
    async def delete(self, name: str) -> None:
        await self.blocking(service.remove_schedule, name)
        self.set_status(204)
        self.finish()


class SchedulePauseHandler(FlyteHandler):
    @answers
    async def post(self, name: str, action: str) -> None:
        await self.blocking(service.pause_schedule, name, action == "pause")
        self.reply({"name": name, "paused": action == "pause"})


class PreviewHandler(FlyteHandler):
    @answers
    async def get(self) -> None:
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        self.reply(await self.blocking(service.preview, query, datetime.now(UTC)))


_ID = r"(?P<run_id>[A-Za-z0-9_\-]+)"
_NAME = r"(?P<name>[^/]+)"

ROUTES: list[tuple[str, type[FlyteHandler]]] = [
    (r"/flyte-lab/api/config", ConfigHandler),
    (r"/flyte-lab/api/graph", GraphHandler),
    (r"/flyte-lab/api/runs", RunsHandler),
    (rf"/flyte-lab/api/runs/{_ID}", RunHandler),
    (rf"/flyte-lab/api/runs/{_ID}/resume", ResumeHandler),
    (rf"/flyte-lab/api/runs/{_ID}/relaunch", RelaunchHandler),
    (rf"/flyte-lab/api/runs/{_ID}/cancel", CancelHandler),
    (rf"/flyte-lab/api/runs/{_ID}/tasks/(?P<task>[A-Za-z_][A-Za-z0-9_]*)/notebook", TaskNotebookHandler),
    (rf"/flyte-lab/api/runs/{_ID}/tasks/(?P<task>[A-Za-z_][A-Za-z0-9_]*)/log", TaskLogHandler),
    (r"/flyte-lab/api/schedules", SchedulesHandler),
    (r"/flyte-lab/api/schedules/preview", PreviewHandler),
    (rf"/flyte-lab/api/schedules/{_NAME}/(?P<action>pause|resume)", SchedulePauseHandler),
    (rf"/flyte-lab/api/schedules/{_NAME}", ScheduleHandler),
]
