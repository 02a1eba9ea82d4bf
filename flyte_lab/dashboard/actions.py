"""Cancel, Resume and Relaunch from the dashboard, through `flyte_lab.engine.api` as the CLI does.

Cancel is one store write, done at once. Resume and Relaunch drive a whole run: each runs in its own process
(`python -m flyte_lab.dashboard.actions resume|relaunch RUN_ID`), so the page stays live, the server's threads
hold no kernels, and a run outlives a restarted dashboard. A reaper thread per process records how it ended.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field

from flyte_lab.statuses import RunStatus

_lock = threading.Lock()
_running: list[Action] = []


@dataclass
class Action:
    """One background Resume or Relaunch; `new_run_id` is set as soon as a relaunch has recorded its run."""

    kind: str
    run_id: str
    process: subprocess.Popen[str]
    new_run_id: str | None = None
    returncode: int | None = None
    message: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> str:
        target = self.new_run_id or self.run_id
        if not self.done.is_set():
            return f"{self.kind} of `{self.run_id}` is running (run `{target}`)"
        if self.returncode == 0:
            return f"{self.kind} of `{self.run_id}` finished: run `{target}` succeeded"
        return f"{self.kind} of `{self.run_id}` ended: {self.message or f'exit code {self.returncode}'}"


def cancel(run_id: str) -> str:
    from flyte_lab.engine.api import cancel_run

    run_id, state = cancel_run(run_id)
    return f"cancel of `{run_id}`: {state}"


def start(kind: str, run_id: str) -> Action:
    """Start `resume` or `relaunch` of `run_id` in a child process; returns at once."""
    if kind not in ("resume", "relaunch"):
        raise ValueError(f"unknown action {kind!r}")
    process = subprocess.Popen([sys.executable, "-m", "flyte_lab.dashboard.actions", kind, run_id],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                               start_new_session=True)  # a Ctrl-C of the dashboard does not stop the run
    action = Action(kind, run_id, process)
    with _lock:
        _running.append(action)
    threading.Thread(target=_reap, args=(action,), name=f"flyte-dashboard-{kind}", daemon=True).start()
    return action


def _reap(action: Action) -> None:
    assert action.process.stdout is not None and action.process.stderr is not None
    for line in action.process.stdout:
        if line.startswith("run "):
            action.new_run_id = line.split()[1]
    errors = action.process.stderr.read().strip().splitlines()
    action.returncode = action.process.wait()
    action.message = errors[-1] if errors else ""
    action.process.stdout.close()
    action.process.stderr.close()
    action.done.set()
    with _lock:
        _running.remove(action)


def wait_all(timeout: float | None = None) -> bool:
    """Wait for every background action of this process to end; False if some are still running."""
    with _lock:
        pending = list(_running)
    return all(a.done.wait(timeout) for a in pending)


def _main(argv: list[str]) -> int:
    from flyte_lab.engine import api
    from flyte_lab.errors import FlyteLabError

    kind, run_id = argv
    try:
        if kind == "resume":
            record = api.resume_run(run_id)
        else:
            from flyte_lab.graph.validate import decode_values, validate_notebook

            stored = api.get_run(run_id)
            wf = validate_notebook(stored["notebook"])
            record = api.run_notebook(stored["notebook"], decode_values(wf, dict(stored["params"])),
                                      cluster=stored.get("cluster") or "shared",
                                      on_created=lambda new: print(f"run {new}", flush=True))
    except FlyteLabError as exc:
        print(f"flyte-lab: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(f"run {record['run_id']} {record['status']}", flush=True)
    if record["status"] != RunStatus.SUCCEEDED:
        print(f"run `{record['run_id']}` {record['status']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from flyte_lab.process_exit import exit_process

    exit_process(_main(sys.argv[1:]))
