"""The function Dask runs for one task attempt: build the task notebook, execute it with papermill.

It never raises for a task's own failure: it returns a result dict saying
who is at fault (`user`: the cell raised or a type check failed; `timeout`;
`infra`: the kernel died). A lost worker surfaces in the driver as a Dask
error instead, which is also `infra`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")
EVENT_TOPIC = "flyte-lab"


def run_task_attempt(spec: dict[str, Any]) -> dict[str, Any]:
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from flyte_lab.engine.kernels import kernel_manager_for

    # the outcome is reported through the result; nbclient's own error logs (and asyncio's complaints about
    # the poller it abandons on a timeout) would only repeat it on the driver's terminal
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    worker = _announce(spec)
    started = time.time()
    out_path = Path(spec["output_notebook"])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.from_dict(spec["notebook"])
    result: dict[str, Any] = {"worker": worker, "output_notebook": str(out_path), "started": started,
                              "map_index": spec.get("map_index")}
    try:
        papermill.execute_notebook(
            nb, str(out_path), parameters={"flyte_context": spec["context"]}, kernel_name=spec["kernel_name"],
            progress_bar=False, log_output=False, execution_timeout=spec.get("timeout_s"),
            kernel_manager_class=kernel_manager_for(spec.get("env")), shutdown_kernel="immediate",
            request_save_on_cell_execute=False,  # one write at the end (papermill also writes on failure)
        )
    except PapermillExecutionError as exc:
        result.update(status="failed", kind="user", error=_user_error(exc, out_path, spec))
        return result
    except CellTimeoutError:
        result.update(status="failed", kind="timeout", error={
            "type": "Timeout", "message": f"task `{spec['task']}` ran longer than its --timeout of "
            f"{spec['timeout_s']:g}s; its kernel was stopped", "cell": spec["cell"], "line": 1, "traceback": ""})
        return result
    except DeadKernelError as exc:
        result.update(status="failed", kind="infra", error={
            "type": "DeadKernelError", "message": f"the kernel of task `{spec['task']}` died: {exc}",
            "cell": spec["cell"], "line": None, "traceback": ""})
        return result
    outputs = json.loads(Path(spec["context"]["result_path"]).read_text())
    result.update(status="succeeded", outputs=outputs, finished=time.time())
    return result


def _announce(spec: dict[str, Any]) -> str | None:
    """Tell the driver an attempt began here, so a rerun after a lost worker is seen as a new attempt."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    from flyte_lab.engine.kernels import warm_up

    warm_up(worker)
    worker.log_event(EVENT_TOPIC, {"key": spec["key"], "worker": worker.address, "pid": os.getpid(),
                                   "time": time.time()})
    return str(worker.address)


def _user_error(exc: Any, out_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The error located in the user's own cell: the body's line maps to `body_line + n - 1`."""
    import nbformat

    from flyte_lab.engine.task_notebook import BODY_TAG

    tags: list[str] = []
    try:
        # papermill inserts marker cells into the executed notebook, so find the cell that holds the error
        executed = nbformat.read(out_path, as_version=4)
        for cell in executed.cells:
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                tags = cell.metadata.get("tags", [])
    except (OSError, ValueError):
        pass
    lines = [ANSI.sub("", t) for t in (exc.traceback or [])]
    text = "\n".join(lines)
    cell, line = spec["cell"], 1
    if BODY_TAG in tags:
        found = _CELL_LINE.findall(text)
        if found:
            line = spec["body_line"] + int(found[-1]) - 1
    elif any(t.startswith("flyte-setup-cell-") for t in tags):
        setup_cell = next(t for t in tags if t.startswith("flyte-setup-cell-"))
        cell = int(setup_cell.rsplit("-", 1)[1])
        found = _CELL_LINE.findall(text)
        line = int(found[-1]) + 1 if found else 1  # +1: the `%%flyte_setup` line
    return {"type": exc.ename, "message": str(exc.evalue), "cell": cell, "line": line,
            "traceback": _user_frames(text)}


def _user_frames(text: str) -> str:
    """Cut the traceback to the user's code: from the first frame in a notebook cell on."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Cell In["):
            return "\n".join(lines[i:])
    return text
