"""A run in a process of its own: the one way flyte_lab's long-lived processes start one.

The Jupyter server (`server/launcher.py`: forked from its launch template, else spawned), the dashboard's
Resume and Relaunch (`dashboard/actions.py`) and the scheduler (`scheduler/loop.py`, one process per claimed
fire time) all start `python -m flyte_lab.run_launch` (or a fork that runs `main()`) and speak this protocol.
Why a process: the run outlives the request, the page and the launcher itself (its own session unless the
launcher keeps it), its cluster and kernels share nothing with the launcher's loop, and its driver holds the
run's lease under its own pid, so `resume` and `cancel` behave as for the CLI.

Protocol, JSON lines. The launcher writes one request on the child's stdin:

- `{"action": "run", "path", "params"?, "cluster"?, "workers"?, "no_cache"?, "select"?, "reuse"?,
  "allow_changed"?}`: `-p` text by name; `select` `{"only": [...], "from", "to"}` as `flyte-lab run`'s options;
- `{"action": "resume", "run_id", "cluster"?}`;
- `{"action": "relaunch", "run_id", "select"?}`: a new run of the run's notebook with its parameters and cluster;
  `select` as `run`'s makes it a partial run, its unselected tasks taken from earlier runs as `flyte-lab run`
  finds them (the dashboard's "Relaunch from this task" sends `{"from": TASK}`; added by issue 19);
- `{"action": "fire", "schedule", "fire_time", "why"?}`: one claimed fire time of a schedule (`scheduler/launch.py`;
  `why` it fires now, for the scheduler's log);

with `"follow": true` to hear how it ended. The child answers one line as soon as the run is recorded,
`{"run_id"}`, or `{"error": ERROR}` if it was refused (ERROR is `errors.to_wire`: the error's class name,
message, exit code and HTTP status, a refused notebook's diagnostics). With `follow`, a last line when the run
ends: `{"run_id", "status"}` (`status` null: another process runs it), or `{"error": ERROR}`. Without it the
child lets its stdout go after the answer (a Jupyter server may be gone by then). Nothing else is written on
stdout. Exit code as the CLI's: 0 succeeded, 1 failed, 2 refused. Its log (stderr) is the launcher's choice.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flyte_lab.errors import FlyteLabError, LaunchFailed, from_wire, to_wire
from flyte_lab.statuses import RunStatus

if TYPE_CHECKING:
    from flyte_lab.graph.selection import Selection

# (request, created) -> (run id, its final status; None when another process runs it); `created(run_id)` once
# the run is recorded
Action = Callable[[dict[str, Any], Callable[[str], None]], tuple[str, str | None]]


def command() -> list[str]:
    """How a launcher starts the child as a new interpreter."""
    return [sys.executable, "-m", "flyte_lab.run_launch"]


def request_line(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode() + b"\n"


def new_log(who: str) -> tuple[int, Path]:
    """A private log file for one launched run (its stderr), under the home's `lab-logs`: its fd and path."""
    from flyte_lab.engine.api import flyte_home

    logs = flyte_home() / "lab-logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    path = logs / f"{who}-{os.getpid()}-{os.urandom(6).hex()}.log"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), path


def answered(line: bytes, log: Path | str) -> str:
    """The run id of the child's answer line; the error it was refused with, raised; `LaunchFailed` if it ended
    before answering (b"")."""
    if not line:
        raise LaunchFailed(f"the run's process ended before recording the run; its log: {log}")
    answer = json.loads(line)
    if "error" in answer:
        raise from_wire(answer["error"])
    return str(answer["run_id"])


def ended(line: bytes, log: Path | str) -> tuple[str, str | None]:
    """(run id, final status) of the child's last line (`follow`); the error it ended with, raised."""
    if not line:
        raise LaunchFailed(f"the run's process ended without saying how the run ended; its log: {log}")
    answer = json.loads(line)
    if "error" in answer:
        raise from_wire(answer["error"])
    return str(answer["run_id"]), answer["status"]


def spawn(request: dict[str, Any], log: int | IO[Any] | None, *, own_session: bool = True,
          follow: bool = False) -> subprocess.Popen[bytes]:
    """Start the child as a new interpreter with `request` written (blocking launchers: threads, loops); its
    stdout is a pipe to read `answered` (and, with `follow`, `ended`) from, else discarded. `own_session`: a
    Ctrl-C or stop of the launcher does not reach the run."""
    proc = subprocess.Popen(command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE if follow else subprocess.DEVNULL,
                            stderr=log, start_new_session=own_session)
    assert proc.stdin is not None
    proc.stdin.write(request_line(dict(request, follow=follow)))
    proc.stdin.close()
    return proc


# -- the child --------------------------------------------------------------------------------------------


def _selection(request: dict[str, Any]) -> Selection:
    """The request's `select` as a `Selection`, refused (one line) as `flyte-lab run`'s options are."""
    from flyte_lab.graph.selection import Selection

    sel = request.get("select") or {}
    return Selection.parse(sel.get("only") or None, sel.get("from"), sel.get("to"))


def _run(request: dict[str, Any], created: Callable[[str], None]) -> tuple[str, str | None]:
    from flyte_lab.engine.api import run_notebook

    record = run_notebook(request["path"], request.get("params") or {}, cluster=request.get("cluster") or "shared",
                          workers=request.get("workers"), use_cache=not request.get("no_cache"),
                          on_created=created, select=_selection(request), reuse=request.get("reuse"),
                          allow_changed=bool(request.get("allow_changed")))
    return record["run_id"], record["status"]


def _resume(request: dict[str, Any], created: Callable[[str], None]) -> tuple[str, str | None]:
    from flyte_lab.engine.api import resume_run

    run_id = request["run_id"]
    # resume_run claims the run (refusing a live driver) before it reports anything
    record = resume_run(run_id, cluster=request.get("cluster"), on_change=lambda _p: created(run_id),
                        on_event=lambda _line: created(run_id))
    return record["run_id"], record["status"]


def _relaunch(request: dict[str, Any], created: Callable[[str], None]) -> tuple[str, str | None]:
    from flyte_lab.engine.api import get_run, run_notebook
    from flyte_lab.graph.validate import decode_values, validate_notebook

    select = _selection(request)
    stored = get_run(request["run_id"])
    wf = validate_notebook(stored["notebook"])
    record = run_notebook(stored["notebook"], decode_values(wf, dict(stored["params"])),
                          cluster=stored.get("cluster") or "shared", on_created=created, select=select)
    return record["run_id"], record["status"]


def _fire(request: dict[str, Any], created: Callable[[str], None]) -> tuple[str, str | None]:
    from flyte_lab.scheduler.launch import launch_fire

    return launch_fire(request["schedule"], request["fire_time"], created, request.get("why"))


ACTIONS: dict[str, Action] = {"run": _run, "resume": _resume, "relaunch": _relaunch, "fire": _fire}


def _say(out: IO[str], data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the launcher is gone: the run goes on
        out.write(json.dumps(data) + "\n")
        out.flush()


def main() -> int:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # started with the launcher's environment, the source of the runs' `--env` secrets
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what the run prints never mixes with the answers
    os.close(devnull)
    request = json.loads(sys.stdin.readline())
    follow = bool(request.get("follow"))
    answer: str | None = None

    def created(run_id: str) -> None:
        nonlocal answer
        if answer is None:
            answer = run_id
            _say(out, {"run_id": run_id})
            if not follow:
                out.close()

    try:
        run_id, status = ACTIONS[request["action"]](request, created)
        created(run_id)
        if follow:
            _say(out, {"run_id": run_id, "status": status})
        return 0 if status in (RunStatus.SUCCEEDED, None) else 1
    except BaseException as exc:
        if answer is None or follow:
            _say(out, {"error": to_wire(exc)})
        if answer is not None and not isinstance(exc, FlyteLabError | KeyboardInterrupt):
            raise  # a failure of ours mid-run: its traceback goes to the log
        return exc.exit_code if isinstance(exc, FlyteLabError) else 1
    finally:
        with contextlib.suppress(OSError):
            out.close()


if __name__ == "__main__":
    from flyte_lab.import_costs import decline_unused_imports
    from flyte_lab.process_exit import exit_process

    decline_unused_imports()  # as the launch template does: the same run, however it started
    exit_process(main())
