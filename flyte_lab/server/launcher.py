"""Runs launched from Jupyter run in their own process, exactly like `flyte-lab run`.

Why a child process and not a thread of the Jupyter server: the run outlives the request, the browser
tab and the server itself (a restart or Ctrl-C of `jupyter lab` leaves it running: it has its own
session), its local Dask cluster and kernels do not share the server's event loop, GIL or memory,
and its driver holds the run's lease under its own pid, so `resume` and `cancel` behave as for the CLI.

Protocol: the server writes one JSON request on stdin; the child answers one JSON line on stdout
(`{"run_id"}` as soon as the run is recorded, or `{"error": {...}}` if it was refused), then detaches
its stdout and drives the run to its end. Its log (stderr) goes to a file the server chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from flyte_lab.errors import FlyteLabError
from flyte_lab.server.errors import LaunchFailed, from_wire

ANSWER_TIMEOUT_S = 120.0


class Launcher:
    """Starts launcher processes and reaps them; one per server extension."""

    def __init__(self) -> None:
        self.children: set[asyncio.subprocess.Process] = set()
        self._reapers: set[asyncio.Task[int]] = set()

    async def start(self, request: dict[str, Any]) -> str:
        """Start a child for `request`; the run id once it is recorded, or the error it was refused with."""
        from flyte_lab.engine.api import flyte_home

        logs = flyte_home() / "lab-logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        log_path = logs / f"launch-{os.getpid()}-{len(self.children)}-{os.urandom(4).hex()}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "flyte_lab.server.launcher",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=fd,
                start_new_session=True,  # Ctrl-C of `jupyter lab` does not reach the run
            )
        finally:
            os.close(fd)
        self.children.add(proc)
        reaper = asyncio.ensure_future(self._reap(proc))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()
        line = await asyncio.wait_for(proc.stdout.readline(), ANSWER_TIMEOUT_S)
        if not line:
            await proc.wait()
            raise LaunchFailed(f"the run's process ended (exit {proc.returncode}) before recording the run; "
                               f"its log: {log_path}")
        answer = json.loads(line)
        if "error" in answer:
            raise from_wire(answer["error"])
        return str(answer["run_id"])

    async def _reap(self, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        self.children.discard(proc)
        return code

    async def wait_all(self) -> None:
        """Wait for every child to end (tests; the server never does: runs outlive it)."""
        while self.children:
            await asyncio.gather(*(p.wait() for p in list(self.children)))
            await asyncio.sleep(0)


def _answer(data: dict[str, Any], out: Any) -> None:
    """Send the one answer line, then point fd 1 at /dev/null: the server may be gone later."""
    out.write(json.dumps(data) + "\n")
    out.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _error_json(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FlyteLabError):
        data = {k: v for k, v in exc.data.items() if k == "diagnostics"}
        return {"type": type(exc).__name__, "message": exc.message, "data": data, "exit_code": exc.exit_code}
    return {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}", "exit_code": 1}


def main() -> int:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # started with the Jupyter server's environment, the source of the runs' secrets
    from flyte_lab.engine.api import resume_run, run_notebook

    out = os.fdopen(os.dup(1), "w")
    request = json.loads(sys.stdin.readline())
    answered = False

    def created(run_id: str) -> None:
        nonlocal answered
        if not answered:
            answered = True
            _answer({"run_id": run_id}, out)

    try:
        if request["action"] == "run":
            run_notebook(request["path"], request.get("params") or {}, cluster=request.get("cluster") or "shared",
                         workers=request.get("workers"), use_cache=not request.get("no_cache"),
                         on_created=created)
        else:
            run_id = request["run_id"]
            # resume_run claims the run (refusing a live driver) before it reports anything
            resume_run(run_id, cluster=request.get("cluster"), on_change=lambda _p: created(run_id),
                       on_event=lambda _line: created(run_id))
    except BaseException as exc:
        if not answered:
            _answer({"error": _error_json(exc)}, out)
            return 2
        if not isinstance(exc, FlyteLabError | KeyboardInterrupt):
            raise
        return 1
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0


if __name__ == "__main__":
    from flyte_lab.process_exit import exit_process

    exit_process(main())
