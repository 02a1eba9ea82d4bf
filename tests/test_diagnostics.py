"""Every diagnostic code, shown by a notebook fixture named for its behaviour."""

from __future__ import annotations

import json
import subprocess

import pytest

from flyte_lab.graph.validate import graph_json, validate_notebook
from tests.conftest import CLI, NOTEBOOKS

# fixture -> (severity, code, task, cell, line, name) of the diagnostic it must produce
EXPECTED = {
    "type_mismatch": ("error", "type-mismatch", "consume", 3, 1, "count"),
    "int_to_float_mismatch": ("error", "type-mismatch", "consume", 3, 1, "x"),
    "optional_output_to_plain_input": ("error", "type-mismatch", "consume", 3, 1, "x"),
    "schema_columns_mismatch": ("error", "type-mismatch", "use", 3, 1, "frame"),
    "cycle": ("error", "cycle", "alpha", 1, 1, None),
    "duplicate_output": ("error", "duplicate-output", "two", 2, 1, "x"),
    "missing_input": ("warning", "missing-input", "needs", 1, 1, "threshold"),
    "unassigned_output": ("error", "unassigned-output", "fit", 1, 1, "r2"),
    "undefined_name": ("error", "undefined-name", "clean", 1, 2, "undefined_thing"),
    "hidden_state_from_exploration": ("error", "undefined-name", "clean", 3, 2, "threshold"),
    "bad_header_unknown_option": ("error", "bad-header", None, 1, 1, None),
    "bad_header_unknown_type": ("error", "bad-header", "t", 1, 1, "x"),
    "bad_header_syntax": ("error", "bad-header", None, 1, 1, None),
    "duplicate_task_name": ("error", "bad-header", "t", 2, 1, "t"),
    "body_syntax_error": ("error", "syntax-error", "t", 1, 2, None),
    "pickled_class_output": ("warning", "pickled-type", "t", 2, 1, "m"),
    "not_json": ("error", "bad-notebook", None, None, None, None),
    "empty": ("error", "bad-notebook", None, None, None, None),
    "png_renamed": ("error", "bad-notebook", None, None, None, None),
    "schema_invalid": ("error", "bad-notebook", None, None, None, None),
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_fixture_gives_its_diagnostic(fixture: str) -> None:
    wf = validate_notebook(str(NOTEBOOKS / f"{fixture}.ipynb"))
    got = [(d.severity, d.code, d.task, d.cell, d.line, d.name) for d in wf.diagnostics]
    assert got == [EXPECTED[fixture]]


def test_messages_name_both_sides_of_a_mismatch() -> None:
    wf = validate_notebook(str(NOTEBOOKS / "type_mismatch.ipynb"))
    assert wf.diagnostics[0].format("pipeline.ipynb") == (
        "pipeline.ipynb:cell 3:line 1: error[type-mismatch]: input `count: int` of task `consume` (cell 3) is fed "
        "by output `count: str` of task `produce` (cell 2); declare the same type on both sides"
    )


def test_cycle_is_reported_as_a_path() -> None:
    (diag,) = validate_notebook(str(NOTEBOOKS / "cycle.ipynb")).diagnostics
    assert "alpha -> beta -> alpha" in diag.message


def test_hidden_state_names_the_exploration_cell() -> None:
    (diag,) = validate_notebook(str(NOTEBOOKS / "hidden_state_from_exploration.ipynb")).diagnostics
    assert "exploration cell 2" in diag.message


def test_schema_mismatch_names_the_missing_columns() -> None:
    (diag,) = validate_notebook(str(NOTEBOOKS / "schema_columns_mismatch.ipynb")).diagnostics
    assert "columns x2" in diag.message


def test_all_diagnostics_are_collected_in_one_pass() -> None:
    wf = validate_notebook(str(NOTEBOOKS / "many_errors.ipynb"))
    assert sorted(d.code for d in wf.diagnostics) == ["duplicate-output", "type-mismatch", "undefined-name"]


def test_missing_input_is_an_error_when_launching() -> None:
    wf = validate_notebook(str(NOTEBOOKS / "missing_input.ipynb"), launching=True)
    assert [(d.severity, d.code) for d in wf.diagnostics] == [("error", "missing-input")]


def test_valid_notebooks_have_no_diagnostics() -> None:
    for name in ("valid_pipeline", "map_over", "nbformat_v3"):
        wf = validate_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
        assert wf.diagnostics == [], name


def test_map_over_outputs_reach_downstream_as_lists() -> None:
    wf = validate_notebook(str(NOTEBOOKS / "map_over.ipynb"))
    assert wf.edges == [("square", "total", "sq")]
    assert wf.workflow_inputs["items"].type.canonical() == "list[int]"


def test_graph_json_shape() -> None:
    data = graph_json(validate_notebook(str(NOTEBOOKS / "valid_pipeline.ipynb")))
    assert [t["name"] for t in data["tasks"]] == ["make", "stats"]
    assert data["tasks"][1] == {"name": "stats", "cell": 6, "inputs": {"raw": "pd.DataFrame"},
                                "outputs": {"mean": "float", "count": "int"}, "options": {}}
    assert data["edges"] == [["make", "stats", "raw"]]
    assert data["workflow_inputs"] == {"n": {"type": "int", "default": 10}, "seed": {"type": "int", "default": 3}}
    assert data["diagnostics"] == []


@pytest.mark.parametrize("fixture", ["type_mismatch", "cycle", "undefined_name"])
def test_cli_prints_compiler_lines_and_exits_2(fixture: str) -> None:
    path = NOTEBOOKS / f"{fixture}.ipynb"
    proc = subprocess.run([*CLI, "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    code = EXPECTED[fixture][1]
    assert proc.stdout.splitlines()[0].startswith(f"{path}:cell ")
    assert f"error[{code}]" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_json_and_warnings_exit_0() -> None:
    proc = subprocess.run([*CLI, "validate", str(NOTEBOOKS / "missing_input.ipynb"), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["diagnostics"][0]["code"] == "missing-input"
    assert data["diagnostics"][0]["severity"] == "warning"


def test_cli_with_the_missing_param_given_is_clean() -> None:
    proc = subprocess.run([*CLI, "validate", str(NOTEBOOKS / "missing_input.ipynb"), "-p", "threshold=0.5"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
