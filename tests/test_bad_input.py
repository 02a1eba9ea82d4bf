"""Bad input of every kind: exit 2, one clear line, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI, NOTEBOOKS


@pytest.mark.parametrize(("target", "reason"), [
    (str(NOTEBOOKS / "not_json.ipynb"), "invalid JSON"),
    (str(NOTEBOOKS / "empty.ipynb"), "empty"),
    (str(NOTEBOOKS / "png_renamed.ipynb"), "binary"),
    (str(NOTEBOOKS / "schema_invalid.ipynb"), "not a valid notebook"),
    (str(NOTEBOOKS), "is a directory"),
    ("/no/such/notebook.ipynb", "no such file"),
])
def test_validate_refuses_bad_files(target: str, reason: str) -> None:
    proc = subprocess.run([*CLI, "validate", target], capture_output=True, text=True)
    assert proc.returncode == 2
    out = (proc.stdout + proc.stderr).strip()
    assert len(out.splitlines()) == 1
    assert reason in out and "bad-notebook" in out
    assert "Traceback" not in out


def test_unknown_param_is_refused_in_one_line() -> None:
    proc = subprocess.run([*CLI, "validate", str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "nope=1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "flyte-lab: error: -p nope: `nope` is not a workflow input of "
        f"{NOTEBOOKS / 'valid_pipeline.ipynb'} (workflow inputs: n, seed)"]


def test_param_that_does_not_parse_as_its_type() -> None:
    proc = subprocess.run([*CLI, "validate", str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "n=abc"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "expects int" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_arguments_exit_2() -> None:
    proc = subprocess.run([*CLI, "validate"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "--debug", "validate", str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "n=x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
