"""The notebook papermill executes for a task is a valid nbformat 4 notebook, built without validating each
cell as it is made (that cost several ms per task in the driver): validated here once per shape instead."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.engine.task_notebook import (
    BODY_TAG,
    OUTPUTS_TAG,
    build_batch_notebook,
    build_split_notebook,
    build_task_notebook,
)
from flyte_lab.graph.validate import validate_notebook


def workflow(tmp_path: Path, cells: list[str]) -> object:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "pipeline.ipynb"
    nbformat.write(nb, path)
    wf = validate_notebook(str(path))
    assert not wf.errors, wf.errors
    return wf


@pytest.mark.parametrize("setup", [[], ["%%flyte_setup\nimport os"]], ids=["no-setup", "setup"])
def test_each_task_notebook_is_valid_nbformat_with_unique_cell_ids(tmp_path: Path, setup: list[str]) -> None:
    wf = workflow(tmp_path, [*setup, "%%flyte_task make() -> xs: list[int]\nxs = [1, 2]",
                             "%%flyte_task sq(xs: int) -> y: int --map-over xs\ny = xs * xs"])
    for nb in (build_task_notebook(wf, "make"), build_task_notebook(wf, "sq"), build_split_notebook(wf, "sq"),
               build_batch_notebook(wf, "sq", [4, 5])):
        nbformat.validate(nb)  # raises if not valid
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids)
        assert isinstance(nb, nbformat.NotebookNode) and isinstance(nb.cells[0].metadata, nbformat.NotebookNode)
        assert nb.cells[-1].metadata.tags[0] == OUTPUTS_TAG
    body = [c for c in build_task_notebook(wf, "sq").cells if BODY_TAG in c.metadata.tags]
    assert len(body) == 1 and body[0].source.endswith("y = xs * xs")


def test_a_batch_keeps_each_body_line_at_its_number_in_the_task_cell(tmp_path: Path) -> None:
    """Line N of a batch's task cell is line N of the user's cell (a multi-line header included): the element's
    inputs are loaded on line 1, before the header kept as a comment."""
    wf = workflow(tmp_path, ["%%flyte_task make() -> xs: list[int]\nxs = [1, 2]",
                             "%%flyte_task sq(xs: int) \\\n    -> y: int --map-over xs\nz = xs\ny = z * z"])
    nb = build_batch_notebook(wf, "sq", [7, 8])
    bodies = [c for c in nb.cells if BODY_TAG in c.metadata.tags]
    assert [c.metadata.tags[-1] for c in bodies] == ["flyte-element-7", "flyte-element-8"]
    lines = bodies[1].source.split("\n")
    assert lines[0].startswith("globals().update(_flyte_runtime.load_element(flyte_context, globals(), 8))  # %%fl")
    assert lines[2:] == ["z = xs", "y = z * z"]  # body lines 3 and 4, as in the user's cell
