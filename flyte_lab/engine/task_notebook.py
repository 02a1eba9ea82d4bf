"""Turn one task of a workflow into the small notebook papermill executes.

Cells: the run context papermill injects first (there is no `parameters`
cell to put it after), a prelude, the setup cells, input loading (in the
prelude's cell when there are no setup cells), the task cell and the output
check-and-save. Each generated cell is tagged so an
error can be traced to its origin. The task cell keeps its `%%flyte_task` header (and each setup
cell its `%%flyte_setup` line) as Python comments, so line N of the user's
cell is line N of the executed cell and of its traceback. A `--map-over`
task whose list only a kernel may decode gets a second notebook, the same
without the task cell, that stores the list element by element. A batch of
a map-over task's elements (`build_batch_notebook`) runs the prelude and setup
cells once, then, per element, the task cell (its inputs loaded on its first
line) and its outputs, each cell tagged `flyte-element-I` with the element's
index.
"""

from __future__ import annotations

from typing import Any

import nbformat
from nbformat.v4.nbbase import nbformat as NBFORMAT
from nbformat.v4.nbbase import nbformat_minor as NBFORMAT_MINOR
from nbformat.v4.nbbase import random_cell_id

from flyte_lab.graph.model import Task, Workflow

BODY_TAG = "flyte-body"
OUTPUTS_TAG = "flyte-outputs"
INPUTS_TAG = "flyte-inputs"
PRELUDE_TAG = "flyte-prelude"
ELEMENT_TAG = "flyte-element-"  # + the map-over element's index, on each of a batch's per-element cells


def _cell(source: str, *tags: str) -> dict[str, Any]:
    # a plain dict, not nbformat's `new_code_cell`: that validates each cell against the schema (jsonschema),
    # several ms per task in the driver for cells whose shape is fixed here (a test validates the result)
    return {"id": random_cell_id(), "cell_type": "code", "metadata": {"tags": list(tags)}, "execution_count": None,
            "source": source, "outputs": []}


def task_cell_source(task: Task) -> str:
    """The body under its header turned into comment lines: the body starts at line `body_line` as in Jupyter."""
    header = task.source.split("\n")[: task.body_line - 1] if task.source else [task.header]
    header += [""] * (task.body_line - 1 - len(header))
    return "".join(f"# {line}".rstrip() + "\n" for line in header) + task.body


def build_task_notebook(wf: Workflow, task_name: str) -> Any:
    task = wf.tasks[task_name]
    return _notebook(wf, task, [*_head(wf, load=True), _cell(task_cell_source(task), BODY_TAG), _save_cell()])


def build_split_notebook(wf: Workflow, task_name: str) -> Any:
    """The notebook of a kernel that splits a `--map-over` task's list for it: the setup cells, loading the
    list (its context names it as both input and split output) and saving it element by element. The driver
    runs it when the list is stored in a form only a kernel may decode (a pickle)."""
    return _notebook(wf, wf.tasks[task_name], [*_head(wf, load=True), _save_cell()])


def build_batch_notebook(wf: Workflow, task_name: str, indexes: list[int]) -> Any:
    """The notebook of one kernel running several map-over elements (`indexes`) one after the other, each in
    the namespace the setup cells left (`task_runtime.load_element`): two cells per element, the task cell
    whose first line (the header, a comment) starts with loading the element's inputs, and its outputs'."""
    task = wf.tasks[task_name]
    header, _, rest = task_cell_source(task).partition("\n")
    cells = _head(wf, load=False)
    for index in indexes:
        tag = f"{ELEMENT_TAG}{index}"
        # on line 1, so every line of the body keeps its number; a failing load is reported at line 1 (the
        # header), as the inputs' cell of a task is
        load = f"globals().update(_flyte_runtime.load_element(flyte_context, globals(), {index}))  {header}"
        cells += [_cell(f"{load}\n{rest}", BODY_TAG, INPUTS_TAG, tag),
                  _cell(f"_flyte_runtime.save_element(flyte_context, globals(), {index})", OUTPUTS_TAG, tag)]
    return _notebook(wf, task, cells)


def _head(wf: Workflow, load: bool) -> list[dict[str, Any]]:
    """The prelude and the setup cells, then (`load`) the inputs loaded."""
    # no `parameters` cell: papermill then injects the run context as the first cell, one kernel round trip
    # fewer per task than a placeholder cell followed by the injected one
    prelude = "from flyte_lab.engine import task_runtime as _flyte_runtime\n_flyte_runtime.enter(flyte_context)"
    inputs = "globals().update(_flyte_runtime.load_inputs(flyte_context, globals()))"
    if load and not wf.setup:  # one cell, one kernel round trip fewer per task
        return [_cell(f"{prelude}\n{inputs}", PRELUDE_TAG, INPUTS_TAG)]
    # the setup cells run between the prelude and the inputs (decoding may need their imports)
    cells = [_cell(prelude, PRELUDE_TAG)]
    cells += [_cell(f"# %%flyte_setup\n{setup.source}", f"flyte-setup-cell-{setup.cell}") for setup in wf.setup]
    return [*cells, _cell(inputs, INPUTS_TAG)] if load else cells


def _save_cell() -> dict[str, Any]:
    return _cell("_flyte_runtime.save_outputs(flyte_context, globals())", OUTPUTS_TAG)


def _notebook(wf: Workflow, task: Task, cells: list[dict[str, Any]]) -> Any:
    metadata = {"kernelspec": {"name": wf.kernel_name, "display_name": wf.kernel_name, "language": "python"},
                "flyte_lab": {"task": task.name, "cell": task.cell, "body_line": task.body_line, "notebook": wf.path}}
    return nbformat.from_dict({"nbformat": NBFORMAT, "nbformat_minor": NBFORMAT_MINOR, "metadata": metadata,
                               "cells": cells})
