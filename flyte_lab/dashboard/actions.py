"""Cancel, Resume, Relaunch and Relaunch from a task from the dashboard, through `flyte_lab.engine.api` as the CLI
does.

Cancel is one store write, done at once. Resume and Relaunch drive a whole run: each runs in its own process
(`run_launch`, the protocol every launcher speaks, following the run to its end), so the page stays live, the
server's threads hold no kernels, and a run outlives a restarted dashboard. A reaper thread per process records
how it ended.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flyte_lab import run_launch
from flyte_lab.errors import FlyteLabError
from flyte_lab.statuses import CancelSource, RunStatus

_lock = threading.Lock()
_running: list[Action] = []


@dataclass
class Action:
    """One background Resume or Relaunch; `new_run_id` is set as soon as a relaunch has recorded its run."""

    kind: str
    run_id: str
    process: subprocess.Popen[bytes]
    log: Path
    from_task: str | None = None  # a relaunch from this task (a partial run)
    new_run_id: str | None = None
    returncode: int | None = None
    message: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        """`relaunch`, `relaunch from `c``: how the page's notice names it."""
        return self.kind if self.from_task is None else f"{self.kind} from `{self.from_task}`"

    def describe(self) -> str:
        target = self.new_run_id or self.run_id
        if not self.done.is_set():
            return f"{self.name} of `{self.run_id}` is running (run `{target}`)"
        if self.returncode == 0:
            return f"{self.name} of `{self.run_id}` finished: run `{target}` succeeded"
        if self.new_run_id is None and self.returncode == 2:  # refused before any run existed: its one line
            return f"{self.name} of `{self.run_id}` refused: {self.message}"
        return f"{self.name} of `{self.run_id}` ended: {self.message or f'exit code {self.returncode}'}"


def cancel(run_id: str) -> str:
    """What became of the request: "requested" (its driver will stop it), "recorded", or the run's final status."""
    from flyte_lab.engine.api import cancel_run
    from flyte_lab.store.shared import shared_store

    # the server's one store, as its pages read
    return cancel_run(run_id, shared_store(), by=CancelSource.DASHBOARD)[1]


def start(kind: str, run_id: str, from_task: str | None = None) -> Action:
    """Start `resume` or `relaunch` of `run_id` in a process of its own; returns at once. `from_task`: a relaunch
    of that task and everything downstream of it (`flyte-lab run --from TASK`), the rest taken from earlier runs."""
    if kind not in ("resume", "relaunch") or (from_task is not None and kind != "relaunch"):
        raise ValueError(f"unknown action {kind!r}" + (f" from {from_task!r}" if from_task is not None else ""))
    request: dict[str, object] = {"action": kind, "run_id": run_id}
    if from_task is not None:
        request["select"] = {"from": from_task}
    log_fd, log = run_launch.new_log(f"dashboard-{kind}")
    try:
        process = run_launch.spawn(request, log_fd, follow=True)
    finally:
        os.close(log_fd)  # the child has its own copy
    action = Action(kind, run_id, process, log, from_task)
    with _lock:
        _running.append(action)
    threading.Thread(target=_reap, args=(action,), name=f"flyte-dashboard-{kind}", daemon=True).start()
    return action


def _reap(action: Action) -> None:
    out = action.process.stdout
    assert out is not None
    try:
        action.new_run_id = run_launch.answered(out.readline(), action.log)
        run_id, status = run_launch.ended(out.readline(), action.log)
        if status != RunStatus.SUCCEEDED:
            action.message = f"run `{run_id}` {status}"
    except FlyteLabError as exc:
        action.message = exc.message
    action.returncode = action.process.wait()
    out.close()
    action.done.set()
    with _lock:
        _running.remove(action)


def wait_all(timeout: float | None = None) -> bool:
    """Wait for every background action of this process to end; False if some are still running."""
    with _lock:
        pending = list(_running)
    return all(a.done.wait(timeout) for a in pending)
