from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
EXAMPLES = Path(__file__).parent.parent / "example_notebooks"
CLI = [sys.executable, "-m", "flyte_lab.cli.main"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private FLYTE_LAB_HOME (store + artifacts) for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("FLYTE_LAB_HOME", str(path))
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    monkeypatch.delenv("FLYTE_LAB_ARTIFACTS", raising=False)
    return path


def cli_env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if home is not None:
        env["FLYTE_LAB_HOME"] = str(home)
    return env
