"""A real `jupyter lab` (this checkout's server and lab extensions) and Debian's Chromium, for UI tests."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import CHROMIUM, NOTEBOOKS

BUILT = Path(__file__).resolve().parents[2] / "flyte_lab" / "labextension"
READY = re.compile(r"flyte_lab: REST API ready at")  # logged once the sockets are bound


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Debian chromium is not installed at {CHROMIUM} (`apt-get install -y chromium`)"
    if not (BUILT / "static" / "style.js").exists():
        return "the lab extension is not built (`cd labextension && jlpm install && jlpm build:prod`)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, sources: list[str], parameters_cell: int | None = None) -> None:
    """A notebook of code cells (python3 kernel); `parameters_cell` is tagged `parameters`."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell(s) for s in sources]
    if parameters_cell is not None:
        nb.cells[parameters_cell].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)


def open_panel(page: Any, lab: Lab, path: str) -> None:
    """Open `path` in Lab and show the Flyte sidebar."""
    from playwright.sync_api import expect

    page.goto(lab.open(path))
    # the active notebook: after a reload Lab restores earlier tabs too, and the first in the page may be hidden
    expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")).to_be_visible(timeout=60_000)
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="flyte-lab-panel"]')
    panel = page.locator("#flyte-lab-panel")
    # a new workspace opens the sidebar by itself once Lab restored its layout: a click just then closes it
    # again, so look once more (the sidebar opens by itself at most once per workspace)
    for _ in range(3):
        if tab.get_attribute("aria-selected") != "true":
            tab.click()
        try:
            expect(panel).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            continue
    expect(panel).to_be_visible()


class Lab:
    """A `jupyter lab` process: started by the fixture, stopped (and started again on the same port and token, as
    a restarted server a page left open reconnects to) by a test that needs the server gone."""

    def __init__(self, url: str, token: str, root: Path, home: Path, argv: list[str], env: dict[str, str]) -> None:
        self.url, self.token, self.root, self.home, self.argv, self.env = url, token, root, home, argv, env
        self.log: list[str] = []
        self.start()

    def open(self, path: str) -> str:
        return f"{self.url}lab/tree/{path}?token={self.token}"

    def start(self) -> None:
        proc = subprocess.Popen(self.argv, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # the server says when it listens
            self.log.append(line)
            if READY.search(line):
                break
        else:
            proc.wait()
            pytest.fail("jupyter lab did not start:\n" + "".join(self.log[-40:]))
        self.proc = proc
        self._drain = threading.Thread(target=lambda: self.log.extend(proc.stderr or ()), daemon=True)
        self._drain.start()

    def stop(self) -> None:
        """Stop the server and the kernels and run processes it started (a test that stopped it waits for its own)."""
        proc = self.proc
        started = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # runs are detached from the server on purpose; the test's own must end with it
        _, alive = psutil.wait_procs(started, timeout=60)
        for child in alive:
            child.kill()
        psutil.wait_procs(alive, timeout=10)
        self._drain.join(10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root, home, data, config = (tmp_path / n for n in ("root", "home", "data", "config"))
    for d in (root, data / "labextensions", config):
        d.mkdir(parents=True)
    for name in ("valid_pipeline.ipynb", "type_mismatch.ipynb"):
        shutil.copy(NOTEBOOKS / name, root / name)
    (data / "labextensions" / "flyte-lab").symlink_to(BUILT, target_is_directory=True)
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, FLYTE_LAB_HOME=str(home), JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(data),
               JUPYTER_PATH=str(data), PYTHONPATH=os.pathsep.join(filter(None, [str(BUILT.parents[1]),
                                                                           os.environ.get("PYTHONPATH")])))
    env.pop("FLYTE_LAB_DB_URL", None)
    env.pop("FLYTE_LAB_ARTIFACTS", None)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--ServerApp.jpserver_extensions={'flyte_lab': True}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    lab = Lab(f"http://127.0.0.1:{port}/", token, root, home, argv, env)
    try:
        yield lab
    finally:
        lab.stop()
        from flyte_lab.engine.shared_executor import stop

        stop(home)  # the shared executor the runs started (kept between runs by design)
        (tmp_path / "jupyter-lab.log").write_text("".join(lab.log))  # kept for a failed test's post-mortem


def docs_screenshot(page: Any, name: str) -> None:
    """With FLYTE_LAB_DOCS_SCREENSHOTS=1, the Flyte sidebar as the README shows it (docs/NAME.png)."""
    if os.environ.get("FLYTE_LAB_DOCS_SCREENSHOTS"):
        page.locator("#flyte-lab-panel").screenshot(path=str(BUILT.parents[1] / "docs" / f"{name}.png"))
