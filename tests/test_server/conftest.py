"""pytest-jupyter for the server extension tests: its fixtures, and its hooks that run `async def` tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_core import pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F401 - hooks
from pytest_jupyter.jupyter_server import *  # noqa: F403 - jp_fetch, jp_serverapp, ...

from tests.conftest import NOTEBOOKS

API = ("flyte-lab", "api")


@pytest.fixture
def jp_server_config(home: Path) -> dict[str, Any]:
    # `home` first: the server (and the runs it starts) use this test's private FLYTE_LAB_HOME
    return {"ServerApp": {"jpserver_extensions": {"flyte_lab": True}}}


@pytest.fixture
def root(jp_root_dir: Path) -> Path:
    for name in ("valid_pipeline.ipynb", "type_mismatch.ipynb"):
        shutil.copy(NOTEBOOKS / name, jp_root_dir / name)
    return jp_root_dir


@pytest.fixture
def fetch(jp_fetch: Any) -> Any:
    """jp_fetch (token-authenticated) that answers errors instead of raising them; bodies as JSON."""

    async def go(*parts: str, method: str = "GET", body: Any = None, params: dict[str, str] | None = None) -> Any:
        data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
        return await jp_fetch(*API, *parts, method=method, body=data, params=params, raise_error=False)

    return go


@pytest.fixture
def launcher(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["flyte_lab_launcher"]
