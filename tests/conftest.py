from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
EXAMPLES = Path(__file__).parent.parent / "example_notebooks"
CLI = [sys.executable, "-m", "flyte_lab.cli.main"]
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a downloaded browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright launches Debian's Chromium with the flags that work here.

    Every browser test shares pytest-playwright's one `browser`: a second sync_playwright() in the same
    process fails, because the first keeps its event loop running in the main thread.
    """
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


def stop_executors_under(root: Path) -> None:
    """Stop every shared executor of a home up to three folders below `root`: a run started one unless told
    `--cluster local`, and it would idle for 10 minutes after its test (taking memory and CPU from the rest)."""
    from flyte_lab.engine.shared_executor import stop

    for depth in range(4):
        for info in root.glob("/".join(["*"] * depth + ["executors", "*", "executor.json"])):
            stop(info.parents[2])


@pytest.fixture(autouse=True)
def _no_executor_outlives_its_test(tmp_path: Path) -> Iterator[None]:
    """Homes a test made in its own tmp_path (the `home` fixture stops its own)."""
    yield
    stop_executors_under(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def _no_executor_outlives_its_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Homes of module-scoped fixtures (made with tmp_path_factory), once the module's tests are done."""
    yield
    stop_executors_under(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def engine_postgres() -> Iterator[Any]:
    """The session's PostgreSQL server for FLYTE_LAB_TEST_DB=postgresql (started on first use only)."""
    from tests.pg_server import PostgresServer, Unavailable

    try:
        server = PostgresServer.start()
    except Unavailable as why:
        pytest.fail(f"FLYTE_LAB_TEST_DB=postgresql but no PostgreSQL server can start: {why}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A private FLYTE_LAB_HOME (store + artifacts) for one test; with FLYTE_LAB_TEST_DB=postgresql its run
    store is a fresh database on the session's PostgreSQL server (FLYTE_LAB_DB_URL, which subprocesses
    inherit through `cli_env`). A shared executor a run started in it (`flyte-lab run`'s default) is stopped
    at the end."""
    from tests.pg_server import engine_on_postgres

    path = tmp_path / "home"
    monkeypatch.setenv("FLYTE_LAB_HOME", str(path))
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    monkeypatch.delenv("FLYTE_LAB_ARTIFACTS", raising=False)
    if engine_on_postgres():
        monkeypatch.setenv("FLYTE_LAB_DB_URL", request.getfixturevalue("engine_postgres").fresh_database())
    try:
        yield path
    finally:
        from flyte_lab.engine.shared_executor import stop

        stop(path)


def cli_env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if home is not None:
        env["FLYTE_LAB_HOME"] = str(home)
    return env
