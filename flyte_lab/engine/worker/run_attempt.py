"""The function Dask runs for one task attempt: build the task notebook, execute it with papermill.

It never raises for a task's own failure: it returns an `AttemptResult`
(`engine/attempt_records.py`) saying who is at fault (`user`: the cell raised, a type check failed or the
kernelspec is missing; `timeout`; `cancelled`; `infra`: the kernel died). A
lost worker surfaces in the driver as a Dask error instead, which is also
`infra`.

The spec comes from the driver (`engine/driver.py`, `_submit`). Besides the
task's notebook and context it carries `key` (the Dask key, which
`cancel_attempts` names), `timeout_s` (the budget of one attempt, kernel
start to outputs saved), `env` (this task's own `--env`, secrets included),
`scrub` (every secret's variable name, hidden from all other kernels),
`artifact_key` (hex; reaches the kernel only through a private file) and
`output_notebook` / `context.result_path` (paths or fsspec URLs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from flyte_lab.engine.attempt_records import AttemptFailed, AttemptResult, AttemptSucceeded, ErrorRecord
from flyte_lab.engine.worker import attempts
from flyte_lab.engine.worker.attempts import AttemptStopped, cancel_attempts
from flyte_lab.engine.worker.live_output import LiveOutput, worker_sender

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")
EVENT_TOPIC = "flyte-lab"


def run_task_attempt(spec: dict[str, Any]) -> AttemptResult | list[AttemptResult]:
    """One attempt; a batch of map-over elements (`spec["elements"]`) returns one result per element that ran, in
    order: those that succeeded, then the one that failed (if one did; the batch ends there)."""
    from flyte_lab.engine.worker.files import private_subdir
    from flyte_lab.engine.worker.kernels import fork_refusal
    from flyte_lab.engine.worker.kernelspecs import missing_kernelspec

    # the outcome is reported through the result; nbclient's own error logs (and asyncio's complaints about
    # the poller it abandons on a timeout) would only repeat it on the driver's terminal
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if spec.get("scrub"):  # the run has secrets: this worker holds them in memory from now on (tcp:// workers)
        from flyte_lab.private_process import hide_memory

        hide_memory()
    missing = missing_kernelspec(spec["kernel_name"])
    where: dict[str, Any] = {"worker": _announce(spec), "started": time.time()}
    task, cell = spec["task"], spec["cell"]
    mismatch = _env_mismatch(spec, where["worker"])
    if mismatch is not None and not mismatch[1]:  # refused before any kernel or template starts here
        return AttemptFailed(kind="user", error=ErrorRecord.refused("EnvironmentMismatch", "\n".join([
            f"task `{task}` cannot run on worker {where['worker']}: its environment differs from the driver's "
            "(install the same versions, or run with --allow-env-mismatch):",
            *(f"  {d.line()}" for d in mismatch[0])]), cell=cell), **where)
    if missing:
        return AttemptFailed(kind="user", error=ErrorRecord.refused(
            "NoSuchKernel", f"task `{task}` cannot start: {missing}", cell=cell), **where)
    if where["worker"] is not None:
        _warm(spec)
    try:
        attempt = attempts.begin(str(spec.get("key") or uuid.uuid4().hex), spec.get("timeout_s"),
                                 spec.get("mem_limit_bytes"))
    except AttemptStopped:
        return AttemptFailed(kind="cancelled", error=ErrorRecord.cancelled(f"task `{task}` was cancelled", cell=cell),
                             **where)
    context = _kernel_context(spec)
    if isinstance(context, str):
        attempt.finish()
        return AttemptFailed(kind="infra", error=ErrorRecord.infrastructure("NoArtifactKey", context, cell=cell),
                             **where)
    local = os.path.join(private_subdir("notebooks"), f"{uuid.uuid4().hex}.ipynb")
    live = LiveOutput(str(spec.get("key")), worker_sender(), secrets=_secret_values(spec))
    elements = _Elements(attempt, live) if spec.get("elements") else None
    try:
        stopped = _execute(spec, context, local, attempt, live, elements)
    finally:
        attempt.finish()  # the kernel is gone (and reaped) from here on, whatever happened
        live.flush(final=True)  # before the result: the driver stores the last lines first
    where["usage"] = attempt.usage.as_json() if attempt.usage is not None else None
    # the driver says and records each once per run
    notes = [fork_refusal(spec["kernel_name"]),
             *(f"environment differs (--allow-env-mismatch): {d.line()}" for d in (mismatch or ([], False))[0])]
    where["kernel_note"] = "\n".join(n for n in notes if n) or None  # one note per line
    try:
        executed = _publish(local, spec["output_notebook"])
        where["output_notebook"] = spec["output_notebook"] if executed is not None else None
    finally:
        if os.path.exists(local):
            os.unlink(local)
    if elements is not None:
        return _batch_results(spec, stopped, attempt, executed, where, elements.current)
    if stopped is None:
        from flyte_lab.engine.worker.files import read_bytes

        return AttemptSucceeded(outputs=json.loads(read_bytes(spec["context"]["result_path"])), **where)
    return _failure(spec, stopped, attempt, executed, where)


class _Elements:
    """Which element of a batch runs now: each one's start labels the live output that follows and starts its
    own `--timeout` budget."""

    def __init__(self, attempt: attempts.Attempt, live: LiveOutput) -> None:
        self.attempt, self.live = attempt, live
        self.current: int | None = None

    def begin(self, index: int) -> None:
        if index != self.current:
            if self.current is not None:
                self.attempt.restart_clock()
            self.current = index
            self.live.element(index)


def _batch_results(spec: dict[str, Any], stopped: _Stopped | None, attempt: attempts.Attempt, executed: Any,
                   where: dict[str, Any], current: int | None) -> list[AttemptResult]:
    """One result per element of the batch that ran; the kernel's usage and notes go with the first only (the
    driver sums a map's CPU and takes its largest peak)."""
    from flyte_lab.engine.worker.files import read_bytes

    order: list[int] = list(spec["elements"])
    failed_at = None if stopped is None else order.index(current) if current in order else 0
    results: list[AttemptResult] = []
    shared = {k: v for k, v in where.items() if k not in ("usage", "kernel_note")}
    for position, index in enumerate(order[:failed_at]):
        extra = where if position == 0 else shared
        path = spec["context"]["elements"][index]["result_path"]
        results.append(AttemptSucceeded(outputs=json.loads(read_bytes(path)), **extra))
    if stopped is not None:
        results.append(_failure(spec, stopped, attempt, executed, where if not results else shared))
    return results


def _failure(spec: dict[str, Any], stopped: _Stopped, attempt: attempts.Attempt, executed: Any,
             where: dict[str, Any]) -> AttemptFailed:
    task, cell = spec["task"], spec["cell"]
    if attempt.stopped_by == "cancelled":
        return AttemptFailed(kind="cancelled", error=ErrorRecord.cancelled(f"task `{task}` was cancelled", cell=cell),
                             **where)
    if attempt.stopped_by == "oom":
        return AttemptFailed(kind="oom", error=ErrorRecord.out_of_memory(
            task, attempt.oom_peak_bytes, spec["mem_limit_bytes"], cell=cell), **where)
    if attempt.stopped_by == "timeout" or stopped.kind == "timeout":
        return AttemptFailed(kind="timeout", error=ErrorRecord.timeout(task, spec["timeout_s"], cell=cell), **where)
    if stopped.kind == "user":
        return AttemptFailed(kind="user", error=_user_error(stopped.exc, executed, spec), **where)
    return AttemptFailed(kind="infra", error=ErrorRecord.infrastructure(
        type(stopped.exc).__name__, f"the kernel of task `{task}` died: {stopped.exc}", cell=cell), **where)


def _secret_values(spec: dict[str, Any]) -> list[str]:
    """What the live output masks: the values of this task's `--env` names that carry a secret (`scrub`, every
    `K` of a `K=$NAME`); a plain `--env MODE=fast` is no secret, and masking `fast` would garble its lines."""
    scrub = set(spec.get("scrub") or ())
    return [value for name, value in (spec.get("env") or {}).items() if name in scrub]


def _env_mismatch(spec: dict[str, Any], worker: str | None) -> Any:
    """This worker against the driver's versions (a remote cluster's attempts carry them): `env_check`'s."""
    if not spec.get("expected_env"):
        return None
    from flyte_lab.engine.env_check import attempt_mismatch

    return attempt_mismatch(spec["expected_env"], worker or "this worker")


@dataclass(frozen=True)
class _Stopped:
    """How papermill's execution ended short of success: a cell raised (`user`), the kernel died or the
    attempt was stopped (`infra`), or nbclient's own per-cell timeout fired (a backstop: the watchdog
    normally fires first)."""

    kind: Literal["user", "infra", "timeout"]
    exc: Any  # papermill's `PapermillExecutionError` for `user`


def _execute(spec: dict[str, Any], context: dict[str, Any], local: str, attempt: attempts.Attempt,
             live: LiveOutput, elements: _Elements | None = None) -> _Stopped | None:
    """Run papermill; None on success."""
    import asyncio

    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from flyte_lab.engine.worker.kernels import kernel_manager_for
    from flyte_lab.engine.worker.papermill_engine import ENGINE_NAME

    manager = kernel_manager_for(spec.get("env"), attempt_key=attempt.key, scrub=spec.get("scrub") or (),
                                 modules=spec.get("setup_modules") or ())
    loop = _own_event_loop()
    attempt.running_on(loop)  # a kill (cancel, timeout) wakes papermill at once
    try:
        papermill.execute_notebook(
            _with_context(nbformat.from_dict(spec["notebook"]), context), local, parameters=None,
            kernel_name=spec["kernel_name"], progress_bar=False, log_output=False, engine_name=ENGINE_NAME,
            execution_timeout=spec.get("timeout_s"), kernel_manager_class=manager, shutdown_kernel="immediate",
            request_save_on_cell_execute=True,  # our engine: mid-run saves of longer attempts only
            live_output=live, live_url=spec["output_notebook"],
            on_element=elements.begin if elements is not None else None,
        )
    except PapermillExecutionError as exc:
        return _Stopped("user", exc)
    except CellTimeoutError as exc:
        return _Stopped("timeout", exc)
    except AttemptStopped as exc:
        return _Stopped("infra", exc)  # cancelled while its kernel started: the caller reports the cancel
    except (DeadKernelError, RuntimeError) as exc:  # RuntimeError: jupyter_client's "kernel died before replying"
        return _Stopped("infra", exc)
    except asyncio.CancelledError as exc:  # woken by `Attempt.stop` between two of nbclient's awaits
        return _Stopped("infra", exc)
    finally:
        attempt.running_on(None)
        _release_event_loop(loop)
    return None


def _with_context(nb: Any, context: dict[str, Any]) -> Any:
    """The run context as the first lines of the prelude cell, tagged `injected-parameters` as papermill tags
    what it injects (triage reads the literal back from there): one cell, and one kernel round trip, fewer
    than papermill's own injected cell, and no parameter translation per task."""
    first = nb.cells[0]
    first.source = f"# Parameters\nflyte_context = {context!r}\n\n{first.source}"
    first.metadata["tags"] = ["injected-parameters", *first.metadata.get("tags", [])]
    # shown collapsed (Lab, the dashboard's view): a long dict of internal paths is not what a reader came for
    first.metadata["jupyter"] = {"source_hidden": True}
    return nb


def _own_event_loop() -> Any:
    """A new event loop for this attempt, made current for papermill/nbclient in this thread.

    jupyter_core keeps "this thread's loop" in a context variable, and Dask runs a task in a copy of the
    context it was scheduled from: in-process (a notebook's %flyte_run, the Python API) that copy can name
    the caller's loop, which two worker threads would then both try to run. Each attempt gets its own.
    """
    import asyncio

    from jupyter_core import utils

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    utils._loop.set(loop)
    return loop


def _release_event_loop(loop: Any) -> None:
    """Close the attempt's loop (a loop left open in a Dask thread leaks its sockets)."""
    import asyncio

    from jupyter_core import utils

    if not loop.is_running():
        loop.close()
    asyncio.set_event_loop(None)
    utils._loop.set(None)


def _kernel_context(spec: dict[str, Any]) -> dict[str, Any] | str:
    """The context papermill injects (and the executed notebook shows): paths only, never the key itself."""
    from flyte_lab.engine.worker.files import artifact_key_file, cache_dir

    context = {k: v for k, v in spec["context"].items() if k not in ("artifact_key", "home")}
    context["cache_dir"] = cache_dir()
    if spec.get("artifact_key"):
        context["artifact_key_file"] = artifact_key_file(spec["artifact_key"])
        return context
    # a driver that sends no key yet: its own key file when the filesystem is shared (read, never created here)
    legacy = os.path.join(str(spec["context"].get("home", "")), "artifact.key")
    if spec["context"].get("home") and os.path.isfile(legacy):
        context["artifact_key_file"] = legacy
        return context
    if os.environ.get("FLYTE_LAB_ARTIFACT_KEY"):
        return context
    return (f"task `{spec['task']}` got no artifact key from the driver (spec key `artifact_key`); "
            "artifacts cannot be signed or verified")


def _publish(local: str, url: str) -> Any:
    """Write the executed notebook (the task's log, success or not) to its URL; returns it parsed, or None."""
    import nbformat

    from flyte_lab.engine.worker.files import write_bytes

    try:
        with open(local, "rb") as src:
            data = src.read()
    except FileNotFoundError:
        return None
    write_bytes(url, data)
    try:
        # papermill wrote (and validated) it a moment ago: parse, don't validate again
        return nbformat.from_dict(json.loads(data))
    except (ValueError, UnicodeDecodeError):
        return None


def _warm(spec: dict[str, Any]) -> None:
    """This worker's kernel pool for the attempt's kernelspec, setup modules and secrets, filling from now on."""
    from distributed import get_worker

    from flyte_lab.engine.worker.kernels import warm_up

    warm_up(get_worker(), kernel_name=spec["kernel_name"], modules=spec.get("setup_modules") or (),
            scrub=spec.get("scrub") or ())


def _announce(spec: dict[str, Any]) -> str | None:
    """Tell the driver an attempt began here, so a rerun after a lost worker is seen as a new attempt."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    worker.log_event(EVENT_TOPIC, {"key": spec["key"], "worker": worker.address, "name": str(worker.name),
                                   "pid": os.getpid(),
                                   "time": time.time()})
    return str(worker.address)


def _user_error(exc: Any, executed: Any, spec: dict[str, Any]) -> ErrorRecord:
    """The error located in the user's own cell; a setup helper's error at the task line that called it.

    The task cell keeps its header as line 1, so a traceback's `Cell In[n], line L` for the failing cell's own
    execution count is line L of the user's cell.
    """
    from flyte_lab.engine.task_notebook import BODY_TAG

    tags: list[str] = []
    count = None
    # papermill inserts marker cells into the executed notebook, so find the cell that holds the error
    for cell in (executed.cells if executed is not None else []):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            tags, count = cell.metadata.get("tags", []), cell.get("execution_count")
    text = "\n".join(ANSI.sub("", t) for t in (exc.traceback or []))
    frames = [(int(n), int(line)) for n, line in _CELL_LINE.findall(text)]
    own = [line for n, line in frames if n == count] or [line for _, line in frames[-1:]]
    cell, line = spec["cell"], 1
    if BODY_TAG in tags:
        line = own[-1] if own else 1
    else:
        setup = next((t for t in tags if t.startswith("flyte-setup-cell-")), None)
        if setup is not None:
            cell, line = int(setup.rsplit("-", 1)[1]), own[-1] if own else 1
    return ErrorRecord.from_cell_error(exc.ename, str(exc.evalue), cell=cell, line=line, traceback=_user_frames(text))


def _user_frames(text: str) -> str:
    """Cut the traceback to the user's code: from the first frame in a notebook cell on."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Cell In["):
            return "\n".join(lines[i:])
    return text


__all__ = ["EVENT_TOPIC", "cancel_attempts", "run_task_attempt"]
