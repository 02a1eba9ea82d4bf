"""The function Dask runs for one task attempt: build the task notebook, execute it with papermill.

It never raises for a task's own failure: it returns a result dict saying
who is at fault (`user`: the cell raised, a type check failed or the
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
from typing import Any

from flyte_lab.engine.worker import attempts
from flyte_lab.engine.worker.attempts import AttemptStopped, cancel_attempts
from flyte_lab.statuses import TaskStatus

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")
EVENT_TOPIC = "flyte-lab"


def run_task_attempt(spec: dict[str, Any]) -> dict[str, Any]:
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
    worker = _announce(spec, warm=missing is None)
    result: dict[str, Any] = {"worker": worker, "output_notebook": None, "started": time.time(),
                              "map_index": spec.get("map_index")}
    if missing:
        return _failed(result, "user", spec, "NoSuchKernel", f"task `{spec['task']}` cannot start: {missing}")
    try:
        attempt = attempts.begin(str(spec.get("key") or uuid.uuid4().hex), spec.get("timeout_s"))
    except AttemptStopped:
        return _failed(result, "cancelled", spec, "Cancelled", f"task `{spec['task']}` was cancelled")
    context = _kernel_context(spec)
    if isinstance(context, str):
        attempt.finish()
        return _failed(result, "infra", spec, "NoArtifactKey", context)
    local = os.path.join(private_subdir("notebooks"), f"{uuid.uuid4().hex}.ipynb")
    try:
        outcome = _execute(spec, context, local, attempt)
    finally:
        attempt.finish()  # the kernel is gone (and reaped) from here on, whatever happened
    note = fork_refusal(spec["kernel_name"])
    if note:
        result["kernel_note"] = note  # the driver says and records it once per run
    try:
        executed = _publish(local, spec["output_notebook"])
        result["output_notebook"] = spec["output_notebook"] if executed is not None else None
    finally:
        if os.path.exists(local):
            os.unlink(local)
    if attempt.stopped_by == "cancelled" and outcome is not None:
        return _failed(result, "cancelled", spec, "Cancelled", f"task `{spec['task']}` was cancelled")
    if (attempt.stopped_by == "timeout" and outcome is not None) or isinstance(outcome, _Timeout):
        return _failed(result, "timeout", spec, "TaskTimeout",
                       f"task `{spec['task']}` ran longer than its --timeout of {spec['timeout_s']:g}s "
                       "(kernel start to outputs saved); its kernel was killed", line=1)
    if outcome is None:
        from flyte_lab.engine.worker.files import read_bytes

        result.update(status=TaskStatus.SUCCEEDED, outputs=json.loads(read_bytes(spec["context"]["result_path"])),
                      finished=time.time())
        return result
    kind, error = outcome
    if kind == "user":
        result.update(status=TaskStatus.FAILED, kind="user", error=_user_error(error, executed, spec))
        return result
    return _failed(result, "infra", spec, type(error).__name__,
                   f"the kernel of task `{spec['task']}` died: {error}")


class _Timeout:
    """nbclient's own per-cell timeout fired (a backstop; the watchdog normally fires first)."""


def _execute(spec: dict[str, Any], context: dict[str, Any], local: str, attempt: attempts.Attempt) -> Any:
    """Run papermill; None on success, else `("user"|"infra", exception)` or a `_Timeout`."""
    import asyncio

    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from flyte_lab.engine.worker.kernels import kernel_manager_for

    manager = kernel_manager_for(spec.get("env"), attempt_key=attempt.key, scrub=spec.get("scrub") or (),
                                 modules=spec.get("setup_modules") or ())
    loop = _own_event_loop()
    attempt.running_on(loop)  # a kill (cancel, timeout) wakes papermill at once
    try:
        papermill.execute_notebook(
            _with_context(nbformat.from_dict(spec["notebook"]), context), local, parameters=None,
            kernel_name=spec["kernel_name"], progress_bar=False, log_output=False, engine_name=_engine(),
            execution_timeout=spec.get("timeout_s"), kernel_manager_class=manager, shutdown_kernel="immediate",
            request_save_on_cell_execute=True,  # the engine below writes only when execution is cut short
        )
    except PapermillExecutionError as exc:
        return ("user", exc)
    except CellTimeoutError:
        return _Timeout()
    except AttemptStopped as exc:
        return ("infra", exc)  # cancelled while its kernel started: the caller reports the cancel
    except (DeadKernelError, RuntimeError) as exc:  # RuntimeError: jupyter_client's "kernel died before replying"
        return ("infra", exc)
    except asyncio.CancelledError as exc:  # woken by `Attempt.stop` between two of nbclient's awaits
        return ("infra", exc)
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


def _engine() -> str:
    """papermill's nbclient engine, writing the executed notebook once: at the end, or when the kernel died.

    papermill itself writes after a successful run and after a cell error, but not when the kernel was killed
    (timeout, cancel, crash) unless it saves after every cell, a write per cell on the task's critical path.
    """
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.iorw import write_ipynb

    class FinalSave(NotebookExecutionManager):  # type: ignore[misc]
        def save(self, **kwargs: Any) -> None:
            self.last_save_time = self.now()

    class FlyteLabEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                             progress_bar: bool = False, log_output: bool = False, autosave_cell_every: int = 0,
                             **kwargs: Any) -> Any:
            nb_man = FinalSave(nb, output_path=None, progress_bar=False, log_output=log_output,
                               autosave_cell_every=0)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            except BaseException:
                nb_man.notebook_complete()
                if output_path:
                    write_ipynb(nb_man.nb, output_path)
                raise
            nb_man.notebook_complete()
            return nb_man.nb

    if "flyte_lab" not in papermill_engines._engines:
        papermill_engines.register("flyte_lab", FlyteLabEngine)
    return "flyte_lab"


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


def _failed(result: dict[str, Any], kind: str, spec: dict[str, Any], type_: str, message: str,
            line: int | None = None) -> dict[str, Any]:
    result.update(status=TaskStatus.FAILED, kind=kind, error={"type": type_, "message": message, "cell": spec["cell"],
                                                     "line": line, "traceback": ""})
    return result


def _announce(spec: dict[str, Any], warm: bool) -> str | None:
    """Tell the driver an attempt began here, so a rerun after a lost worker is seen as a new attempt."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    if warm:
        from flyte_lab.engine.worker.kernels import warm_up

        warm_up(worker, kernel_name=spec["kernel_name"], modules=spec.get("setup_modules") or (),
                scrub=spec.get("scrub") or ())
    worker.log_event(EVENT_TOPIC, {"key": spec["key"], "worker": worker.address, "pid": os.getpid(),
                                   "time": time.time()})
    return str(worker.address)


def _user_error(exc: Any, executed: Any, spec: dict[str, Any]) -> dict[str, Any]:
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
    return {"type": exc.ename, "message": str(exc.evalue), "cell": cell, "line": line,
            "traceback": _user_frames(text)}


def _user_frames(text: str) -> str:
    """Cut the traceback to the user's code: from the first frame in a notebook cell on."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Cell In["):
            return "\n".join(lines[i:])
    return text


__all__ = ["EVENT_TOPIC", "cancel_attempts", "run_task_attempt"]
