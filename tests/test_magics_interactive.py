"""The interactive gaps of the magics: hidden state caught before a body runs, and where `%flyte_graph` reads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from tests.conftest import NOTEBOOKS


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance(config=config)
    assert sh.run_cell("%load_ext flyte_lab").success
    try:
        yield sh
    finally:
        sh.history_manager.end_session()
        InteractiveShell.clear_instance()


def run(sh: InteractiveShell, source: str) -> BaseException | None:
    """Run a cell as Jupyter does (history, execution count); its error, if any."""
    with capture_output():
        result = sh.run_cell(source, store_history=True)
    return result.error_before_exec or result.error_in_exec


def test_exploration_name_is_refused_before_the_body_runs(shell: InteractiveShell) -> None:
    assert run(shell, "%%flyte_setup\nimport math") is None
    assert run(shell, "threshold = 0.5  # exploring") is None
    error = run(shell, "%%flyte_task clean() -> y: float\nran = True\ny = math.sqrt(threshold)")
    assert isinstance(error, UsageError)
    assert str(error) == ("line 3: error[undefined-name]: task `clean` reads `threshold`, which is defined only by "
                          "an exploration cell (In [2]): that cell never runs in a pipeline; move it into a "
                          "%%flyte_setup cell or declare `threshold` as an input")
    assert "ran" not in shell.user_ns and "y" not in shell.user_ns  # the body never ran


def test_exploration_cell_is_named_from_the_saved_notebook(shell: InteractiveShell, tmp_path: Path) -> None:
    shutil.copy(NOTEBOOKS / "hidden_state_from_exploration.ipynb", tmp_path / "hidden.ipynb")
    shell.user_ns["__session__"] = str(tmp_path / "hidden.ipynb")
    assert run(shell, "%%flyte_setup\nimport pandas as pd\nimport numpy as np") is None
    assert run(shell, "threshold = 0.5  # set while exploring") is None
    error = run(shell, "%%flyte_task clean() -> y: float\ny = threshold * 2")
    assert isinstance(error, UsageError)
    assert "task `clean` (cell 3) reads `threshold`, which is defined only in exploration cell 2" in str(error)
    assert "line 2: error[undefined-name]" in str(error)


def test_inputs_setup_names_and_builtins_pass(shell: InteractiveShell) -> None:
    assert run(shell, "%%flyte_setup\nimport math\ndef half(v):\n    return v / 2\nSCALE = 3.0") is None
    assert run(shell, "x = 4.0") is None
    assert run(shell, "%%flyte_task f(x: float) -> y: float\ny = half(math.sqrt(x)) * SCALE + abs(-0.0)") is None
    assert shell.user_ns["y"] == 3.0


def test_a_name_nobody_defines_is_refused_too(shell: InteractiveShell) -> None:
    error = run(shell, "%%flyte_task f() -> y: int\ny = 1\nz = y + nowhere + elsewhere")
    assert isinstance(error, UsageError)
    assert str(error).startswith("line 3: error[undefined-name]: task `f` reads `elsewhere`, which is not an input")
    assert "(and 1 more: nowhere)" in str(error)


def test_an_undeclared_upstream_output_is_refused(shell: InteractiveShell) -> None:
    assert run(shell, "%%flyte_task make() -> raw: int\nraw = 3") is None
    error = run(shell, "%%flyte_task use() -> doubled: int\ndoubled = raw * 2")
    assert isinstance(error, UsageError)
    assert "reads `raw`" in str(error)


def test_flyte_graph_says_which_file_and_when_it_was_saved(shell: InteractiveShell, tmp_path: Path) -> None:
    path = tmp_path / "valid.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", path)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    with capture_output() as cap:
        shell.run_line_magic("flyte_graph", str(path))
    html = cap.outputs[0].data["text/html"]
    assert f"{path} as saved at 2023-11-14 22:13:20 UTC" in html
    assert "unsaved edits are not in this picture" in html
