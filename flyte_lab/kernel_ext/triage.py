"""What a task's last attempt saw, read back for debugging: its inputs, its code and where it failed.

The executed notebook of the attempt is the record: papermill injected the
attempt's context (each input's artifact URI and type) into it, and it holds
the setup cells and the body exactly as they ran. Values are decoded from
the artifact store, so the kernel gets the very values the attempt received.
`%flyte_debug` loads them into a kernel; `flyte-lab debug` writes a notebook
that does.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

import fsspec

from flyte_lab.errors import UserInputError
from flyte_lab.statuses import TaskStatus

BODY_TAG = "flyte-body"
ELEMENT_TAG = "flyte-element-"  # `engine/task_notebook.py`'s (not imported: this module runs in the user's kernel)
SETUP_TAG_PREFIX = "flyte-setup-cell-"


@dataclass
class AttemptRecord:
    run_id: str
    task: str
    notebook: str  # the source notebook of the run
    cell: int | None  # the task's cell in the source notebook
    status: str
    number: int  # the attempt
    attempts: int
    error: dict[str, Any] | None
    executed: str  # the attempt's executed notebook
    inputs: list[dict[str, Any]]  # {"name", "uri", "type" (TypeRef JSON)} as injected
    map_index: int | None
    body: str
    body_line: int  # the body's first line in the task's cell (the header is line 1)
    setup: list[tuple[int, str]] = field(default_factory=list)  # (cell, source) as the attempt ran them
    graph_task: dict[str, Any] = field(default_factory=dict)  # the task in the graph stored at launch
    written_header: str = ""  # the header lines as the attempt ran them, when its notebook kept them

    def where(self) -> str:
        """`cell 7, line 3` (what is known of it)."""
        error = self.error or {}
        parts = []
        if error.get("cell", self.cell) is not None:
            parts.append(f"cell {error.get('cell', self.cell)}")
        if error.get("line") is not None:
            parts.append(f"line {error['line']}")
        return ", ".join(parts) or "an unknown place"

    def source_line(self) -> str | None:
        """The body line the error points at, as written in the task's cell."""
        line = (self.error or {}).get("line")
        if not isinstance(line, int) or line < self.body_line:
            return None
        lines = self.body.split("\n")
        index = line - self.body_line
        return lines[index] if index < len(lines) else None

    def summary(self) -> str:
        """Where it failed, the source line and the error, as `%flyte_debug` prints it."""
        error = self.error or {}
        head = (f"run {self.run_id}, task `{self.task}` (cell {self.cell}), attempt {self.number} of "
                f"{self.attempts}" + (f", element {self.map_index}" if self.map_index is not None else "")
                + f": {self.status}")
        lines = [head]
        if self.status == TaskStatus.CANCELLED:  # stopped by a cancel: no place in the code is at fault
            lines.append(str(error.get("message") or "cancelled"))
        elif self.status == TaskStatus.FAILED or error:
            lines.append(f"failed at {self.where()}:")
            source = self.source_line()
            if source is not None:
                lines.append(f"  {error.get('line')} | {source}")
            lines.append("  " + (": ".join(str(p) for p in (error.get("type"), error.get("message")) if p)
                                 or "no error recorded"))
        lines.append(f"executed notebook: {self.executed}")
        return "\n".join(lines)

    def header(self) -> str:
        """The task's header as written, else rebuilt from the graph stored at launch (types as written)."""
        if self.written_header:
            return self.written_header
        entry = self.graph_task
        inputs = ", ".join(f"{n}: {t}" for n, t in (entry.get("inputs") or {}).items())
        outs = list((entry.get("outputs") or {}).items())
        arrow = ""
        if len(outs) == 1:
            arrow = f" -> {outs[0][0]}: {outs[0][1]}"
        elif outs:
            arrow = " -> (" + ", ".join(f"{n}: {t}" for n, t in outs) + ")"
        options = entry.get("options") or {}
        flags = f" --map-over {options['map_over']}" if options.get("map_over") else ""
        return f"%%flyte_task {self.task}({inputs}){arrow}{flags}"


def read_attempt(store: Any, run_id: str, task: str) -> AttemptRecord:
    """The last attempt of `task` in run `run_id` (a `UserInputError` saying why when there is none)."""
    run = store.get_run(run_id)
    run_id = run["run_id"]
    tasks = run.get("tasks") or {}
    if task not in tasks:
        known = ", ".join(tasks) or "none"
        raise UserInputError(f"run `{run_id}` has no task `{task}` (its tasks: {known})", run_id=run_id, task=task)
    state = tasks[task]
    if state.get("reused_from"):  # a partial run took its outputs from the run that computed them: debug that
        return read_attempt(store, state["reused_from"]["run_id"], task)
    attempts = (run.get("attempts_detail") or {}).get(task) or []
    if not attempts:
        raise UserInputError(f"task `{task}` of run `{run_id}` never started (status {state['status']}); "
                             "there are no inputs to load", run_id=run_id, task=task)
    last = attempts[-1]
    executed = last.get("output_notebook") or state.get("output_notebook")
    if not executed:
        raise UserInputError(f"attempt {last['number']} of task `{task}` (run `{run_id}`) left no executed "
                             f"notebook ({(last.get('error') or {}).get('type') or last['status']}), so its "
                             "inputs are not recorded", run_id=run_id, task=task)
    nb = _read_json(executed)
    context = injected_context(nb, executed)
    meta = (nb.get("metadata") or {}).get("flyte_lab") or {}
    body_line = int(meta.get("body_line") or 2)
    body, header, setup = "", "", []
    for cell in nb.get("cells", []):
        tags = (cell.get("metadata") or {}).get("tags") or []
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if BODY_TAG in tags:
            header, body = _split_body_cell(source, body_line)
        for tag in tags:
            if tag.startswith(SETUP_TAG_PREFIX) and tag.removeprefix(SETUP_TAG_PREFIX).isdigit():
                setup.append((int(tag.removeprefix(SETUP_TAG_PREFIX)), _strip_setup_magic(source)))
    graph = store.get_graph(run_id)
    graph_task: dict[str, Any] = next((t for t in graph.get("tasks", []) if t.get("name") == task), {})
    inputs, map_index = list(context.get("inputs") or []), context.get("map_index")
    if context.get("elements"):  # a batch of map-over elements: the one that failed (else the last that ran)
        map_index = batch_element(nb)
        element = context["elements"].get(map_index) or {}
        inputs = [{**spec, "uri": element.get("uri")} if spec["name"] == context.get("map_over") else spec
                  for spec in inputs]
    return AttemptRecord(
        run_id=run_id, task=task, notebook=run["notebook"], cell=state.get("cell"), status=last["status"],
        number=last["number"], attempts=len(attempts), error=last.get("error") or state.get("error"),
        executed=executed, inputs=inputs, map_index=map_index,
        body=body, body_line=body_line, setup=setup, graph_task=graph_task, written_header=header)


def batch_element(nb: dict[str, Any]) -> int | None:
    """Which element of a batch's executed notebook failed: the one whose cell holds an error, else the last
    whose cell ran (a timeout, a cancel, a dead kernel), else its first."""
    ran: list[int] = []
    for cell in nb.get("cells", []):
        tags = (cell.get("metadata") or {}).get("tags") or []
        index = next((int(t.removeprefix(ELEMENT_TAG)) for t in tags if t.startswith(ELEMENT_TAG)), None)
        if index is None:
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs") or []):
            return index
        if cell.get("execution_count") is not None or not ran:
            ran.append(index)
    return ran[-1] if ran else None


def _split_body_cell(source: str, body_line: int) -> tuple[str, str]:
    """(header as written, body) of a task notebook's body cell; the header is kept there as comments
    (so that line numbers are the cell's), else it is absent and comes from the stored graph."""
    lines = source.split("\n")
    head = lines[:body_line - 1]
    if head and "# %%flyte_task" in head[0]:  # a batch's cell loads the element's inputs before it on line 1
        head[0] = head[0][head[0].index("# %%flyte_task"):]
        return "\n".join(line.removeprefix("# ") for line in head), "\n".join(lines[body_line - 1:])
    return "", source


def _strip_setup_magic(source: str) -> str:
    first, _, rest = source.partition("\n")
    return rest if first.strip() in ("# %%flyte_setup", "%%flyte_setup") else source


def injected_context(nb: dict[str, Any], where: str) -> dict[str, Any]:
    """The `flyte_context` papermill injected into an executed task notebook (a literal, never evaluated)."""
    for cell in nb.get("cells", []):
        tags = (cell.get("metadata") or {}).get("tags") or []
        if "injected-parameters" not in tags:
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for node in ast.parse(source).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "flyte_context"):
                value = ast.literal_eval(node.value)
                if isinstance(value, dict):
                    return value
    raise UserInputError(f"{where} has no injected flyte_context cell; it is not an executed task notebook")


def _read_json(url: str) -> dict[str, Any]:
    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read the executed notebook {url}: {exc}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{url} is not a notebook")
    return data


def load_inputs(record: AttemptRecord, namespace: dict[str, Any]) -> dict[str, Any]:
    """The attempt's input values, decoded as their declared types (classes from `namespace`).

    A `--map-over` element comes back as a one-element list: that is what the
    task cell reads in a kernel, where the mapped input is the whole list.
    """
    from flyte_lab.engine.api import flyte_home
    from flyte_lab.engine.artifacts import ArtifactStore
    from flyte_lab.graph.model import typeref_from_json

    artifacts = ArtifactStore.from_env(str(flyte_home()), allow_pickle=True)  # the user's own kernel
    over = (record.graph_task.get("options") or {}).get("map_over")
    values: dict[str, Any] = {}
    for spec in record.inputs:
        value = artifacts.get(spec["uri"], typeref_from_json(spec["type"]), namespace)
        values[spec["name"]] = [value] if spec["name"] == over and record.map_index is not None else value
    return values
