"""`%flyte_load`: a finished run's outputs into a kernel, typed by the kernel's own setup cells."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from tests.conftest import CLI, EXAMPLES, cli_env

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("load") / "home"
    done = subprocess.run([*CLI, "run", str(EXAMPLES / "quickstart.ipynb"), "-p", "seed=3"], capture_output=True,
                          text=True, env=cli_env(home), timeout=300)
    assert done.returncode == 0, done.stderr
    runs = subprocess.run([*CLI, "runs", "--json"], capture_output=True, text=True, env=cli_env(home), timeout=60)
    return home, json.loads(runs.stdout)[0]["run_id"]


@pytest.fixture
def shell(quickstart_run: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("FLYTE_LAB_HOME", str(quickstart_run[0]))
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    monkeypatch.delenv("FLYTE_LAB_ARTIFACTS", raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
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


def setup_source() -> str:
    nb = json.loads((EXAMPLES / "quickstart.ipynb").read_text())
    return next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("%%flyte_setup"))


def test_load_every_output_typed(shell: InteractiveShell, quickstart_run: tuple[Path, str]) -> None:
    _, run_id = quickstart_run
    shell.run_cell(setup_source())
    with capture_output() as cap:
        shell.run_line_magic("flyte_load", run_id)
    ns = shell.user_ns
    assert isinstance(ns["raw"], pd.DataFrame) and len(ns["raw"]) == 500
    assert isinstance(ns["X"], np.ndarray) and ns["X"].shape[0] == len(ns["y"])
    assert type(ns["report"]).__name__ == "FitReport" and type(ns["report"]) is ns["FitReport"]
    assert 0.0 < ns["report"].r2 <= 1.0
    assert isinstance(ns["dropped"], int) and isinstance(ns["summary"], dict)
    assert f"loaded from run {run_id}: raw: pd.DataFrame (from load)" in cap.stdout
    # exploration continues from the run: a task cell reads what was loaded
    shell.run_cell_magic("flyte_task", "check(report: FitReport) -> ok: bool", "ok = report.r2 > 0")
    assert ns["ok"] is True


def test_load_chosen_outputs_by_prefix(shell: InteractiveShell, quickstart_run: tuple[Path, str]) -> None:
    _, run_id = quickstart_run
    with capture_output():
        shell.run_line_magic("flyte_load", f"{run_id[:15]} fit.coef clean")
    assert set(shell.user_ns) >= {"coef", "houses", "dropped"}
    assert "report" not in shell.user_ns and "raw" not in shell.user_ns
    assert all(isinstance(c, float) for c in shell.user_ns["coef"])


@pytest.mark.parametrize(("words", "message"), [
    ("", "usage: %flyte_load "),
    ("nope", "no run `nope`"),
    ("RUN fitt", "has no task `fitt` (its tasks: load, clean, features, fit, summarize)"),
    ("RUN fit.r2", "task `fit` of run RUN has no output `r2` recorded (its outputs: coef, report)"),
])
def test_load_refusals(shell: InteractiveShell, quickstart_run: tuple[Path, str], words: str, message: str) -> None:
    _, run_id = quickstart_run
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("flyte_load", words.replace("RUN", run_id))
    assert message.replace("RUN", run_id) in str(info.value)
