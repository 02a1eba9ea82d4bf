"""Triage of a failed task: `%flyte_debug` in a real kernel and `flyte-lab debug` writing a notebook."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import CLI, cli_env
from tests.test_widget import errors_of, execute, pipeline

pytestmark = pytest.mark.cluster

RATIO = ("%%flyte_task ratio(xs: list[float], divisor: float = 0.0) -> r: float\nscale = 1.0\n"
         "r = scale * xs[-1] / divisor")
FIXED = ("%%flyte_task ratio(xs: list[float], divisor: float = 0.0) -> r: float\nscale = 1.0\n"
         "r = scale * xs[-1] / divisor if divisor else math.inf")


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env(home), cwd=cwd, timeout=300)


@pytest.fixture
def failed_run(home: Path, tmp_path: Path) -> tuple[str, Path]:
    """A run of the four-task pipeline with n=6 whose `ratio` task failed (ZeroDivisionError, cell 5, line 3)."""
    path = pipeline(tmp_path / "pipe.ipynb")
    done = cli(home, "run", str(path), "-p", "n=6")
    assert done.returncode == 1, done.stderr
    runs = json.loads(cli(home, "runs", "--json").stdout)
    return runs[0]["run_id"], path


def text_of(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def traceback_of(cell: Any) -> str:
    """The tracebacks a cell showed, without colours."""
    text = "\n".join("\n".join(o["traceback"]) for o in cell.outputs if o.get("output_type") == "error")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


REPRODUCED = ["ZeroDivisionError: float division by zero",
              "UsageError: task `ratio`: the body raised `ZeroDivisionError` (traceback above); its outputs were "
              "not checked"]


def test_flyte_debug_loads_the_inputs_the_attempt_saw(failed_run: tuple[str, Path], tmp_path: Path) -> None:
    run_id, _ = failed_run
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"%flyte_debug {run_id} ratio"),  # no setup ran here yet: the attempt's setup runs first
        new_code_cell("print(repr(xs), repr(divisor))"),
        new_code_cell(RATIO),  # the task cell, rerun as it was
        new_code_cell(FIXED),  # fixed: the output checks pass
        new_code_cell("print(r)"),
    ]), tmp_path)
    report = text_of(nb.cells[1])
    assert "ran the 1 %%flyte_setup cell(s) of the attempt first" in report
    assert f"run {run_id}, task `ratio` (cell 5), attempt 1 of 1: failed" in report
    assert ("failed at cell 5, line 3:\n  3 | r = scale * xs[-1] / divisor\n"
            "  ZeroDivisionError: float division by zero") in report
    # the values of this attempt: n=6 came from the launch, not the notebook's default 4
    assert text_of(nb.cells[2]).strip() == "[0.0, 1.0, 2.0, 3.0, 4.0, 5.0] 0.0"
    assert errors_of(new_notebook(cells=[nb.cells[3]])) == REPRODUCED  # the same error as in the run
    assert "----> 3 r = scale * xs[-1] / divisor" in traceback_of(nb.cells[3])  # on the same line
    assert errors_of(new_notebook(cells=nb.cells[4:])) == []
    assert text_of(nb.cells[5]).strip() == "inf"


def test_debug_command_writes_a_notebook_ready_to_open(failed_run: tuple[str, Path], home: Path,
                                                        tmp_path: Path) -> None:
    run_id, path = failed_run
    done = cli(home, "debug", run_id[:12], "ratio")
    assert done.returncode == 0, done.stderr
    target = path.with_name("pipe.debug-ratio.ipynb")
    assert f"wrote {target}" in done.stdout
    assert "  3 | r = scale * xs[-1] / divisor" in done.stdout
    written = nbformat.read(str(target), as_version=4)
    nbformat.validate(written)
    sources = [c.source for c in written.cells]
    assert sources[1:] == ["%load_ext flyte_lab", "%%flyte_setup\nimport math", f"%flyte_debug {run_id} ratio",
                           RATIO]
    executed = execute(written, tmp_path)
    assert errors_of(executed) == REPRODUCED
    assert "----> 3 r = scale * xs[-1] / divisor" in traceback_of(executed.cells[-1])
    again = cli(home, "debug", run_id, "ratio")
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("nope", "ratio"), "no run `nope`"),
    (("RUN", "absent"), "has no task `absent` (its tasks: make, total, ratio, report)"),
    (("RUN", "report"), "task `report` of run `RUN` never started (status skipped)"),
])
def test_debug_command_refusals(failed_run: tuple[str, Path], home: Path, args: tuple[str, str], message: str) -> None:
    run_id, _ = failed_run
    done = cli(home, "debug", *(a.replace("RUN", run_id) for a in args))
    assert done.returncode == 2
    assert done.stderr.startswith("flyte-lab: error: ")
    assert message.replace("RUN", run_id) in done.stderr
    assert "Traceback" not in done.stderr
