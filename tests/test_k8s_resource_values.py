"""Resource values no scheduler can honour are refused at validation, by `validate`, `run` and `k8s-spec`:
exit 2, one error line naming the task and its cell, and nothing recorded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flyte_lab.cli.main import main
from tests.conftest import CLI, cli_env
from tests.test_engine_run import write_notebook

BAD = ["--mem 4XB", "--cpu -1", "--gpu 1.5", "--cpu 0",
       # float() reads these, str.isdigit() accepts `²`: each once got through (or crashed)
       "--cpu nan", "--cpu inf", "--gpu ²", "--mem 0", "--mem 0.5B", "--mem \uff14Gi",  # a full-width 4
       "--timeout \u0663s"]  # an Arabic-Indic 3


def _notebook(folder: Path, option: str) -> Path:
    return write_notebook(folder / "resources.ipynb", "%%flyte_setup\nimport math",
                          "# exploration\nx = 1",
                          f"%%flyte_task load() -> raw: int {option}\nraw = 1",
                          "%%flyte_task use(raw: int) -> out: int\nout = raw")


@pytest.mark.parametrize("option", BAD)
def test_a_bad_resource_value_is_refused_by_every_command(tmp_path: Path, home: Path, option: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    nb = _notebook(tmp_path, option)
    for command in (["validate"], ["k8s-spec"], ["run", "--cluster", "local"]):
        assert main([*command, str(nb)]) == 2, command
        out, err = capsys.readouterr()
        errors = [line for line in (out + err).splitlines() if "error[" in line or line.startswith("flyte-lab: error")]
        assert len(errors) == 1, (command, out + err)
        assert f"task `load`: `{option}`" in errors[0] and ":cell 3:line 1:" in errors[0], errors[0]
        assert "Traceback" not in out + err
    assert not (home / "store.db").exists()  # nothing recorded, not even an empty store


def test_the_refusal_is_one_line_from_the_installed_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    nb = _notebook(tmp_path, "--gpu ²")
    proc = subprocess.run([*CLI, "run", str(nb)], env=cli_env(home), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "task `load`: `--gpu ²`: must be a whole number" in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("option", ["--mem 4K", "--mem 100B", "--mem 1.5Gi", "--cpu 0.001", "--gpu 0"])
def test_good_values_still_validate(tmp_path: Path, home: Path, option: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(_notebook(tmp_path, option))]) == 0
    assert "valid" in capsys.readouterr().out
