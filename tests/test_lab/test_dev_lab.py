"""`./dev lab` as the README gives it: JupyterLab on 127.0.0.1, a token printed, the quickstart open, the sidebar.

It runs in the environment `./dev` set up (this interpreter's, when it is one: `FLYTE_LAB_VENV`), so it checks
the set-up step (the lab extension linked, the server extension enabled) and the command line, not a fresh
install; a fresh clone is `git clone . /tmp/x && /tmp/x/dev lab`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect

from tests.test_lab.conftest import BUILT, READY, _free_port, _skip_reason

pytestmark = pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")

REPO = BUILT.parents[1]
URL = re.compile(r"JupyterLab with the Flyte sidebar: (http://127\.0\.0\.1:(\d+)/lab/tree/example_notebooks/"
                 r"quickstart\.ipynb\?token=([0-9a-f]{32}))")


def _dev_env_reason() -> str | None:
    venv = Path(sys.prefix)
    installed = venv / ".installed"
    if not installed.exists():
        return f"{venv} is not an environment `./dev` set up (no {installed})"
    if (REPO / "pyproject.toml").stat().st_mtime > installed.stat().st_mtime:
        return "pyproject.toml changed since `./dev` set up this environment: `./dev lab` would reinstall it"
    return _skip_reason()


def test_dev_lab_serves_the_quickstart_with_the_sidebar(page: Page, tmp_path: Path) -> None:
    reason = _dev_env_reason()
    if reason:
        pytest.skip(reason)
    port = _free_port()
    env = dict(os.environ, FLYTE_LAB_VENV=sys.prefix, FLYTE_LAB_LAB_PORT=str(port),
               FLYTE_LAB_HOME=str(tmp_path / "home"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("FLYTE_LAB_LAB_TOKEN", None)
    checkpoints = REPO / "example_notebooks" / ".ipynb_checkpoints"  # Lab checkpoints a notebook it opens
    had_checkpoints = checkpoints.exists()
    quickstart = (REPO / "example_notebooks" / "quickstart.ipynb").read_bytes()
    proc = subprocess.Popen([str(REPO / "dev"), "lab", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
                             "--LabApp.news_url=", "--ServerApp.port_retries=0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    log: list[str] = []
    url = None
    for line in proc.stdout:
        log.append(line)
        url = url or URL.search(line)
        if READY.search(line):
            break
    drain = threading.Thread(target=lambda: log.extend(proc.stdout or ()), daemon=True)
    drain.start()
    try:
        assert proc.poll() is None and url is not None, "".join(log[-40:])
        assert int(url.group(2)) == port
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is needed
            direct.open(f"http://127.0.0.1:{port}/flyte-lab/api/config", timeout=30)
        assert refused.value.code == 403
        page.goto(url.group(1))
        expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")).to_be_visible(timeout=60_000)
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text("quickstart.ipynb")
        tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="flyte-lab-panel"]')
        expect(tab).to_contain_text("Flyte")
        if tab.get_attribute("aria-selected") != "true":
            tab.click()
        panel = page.locator("#flyte-lab-panel")
        expect(panel.locator(".flyte-task")).to_have_text(["load", "clean", "features", "fit", "summarize"],
                                                          timeout=30_000)
        expect(page.locator(".flyte-status")).to_have_text("Flyte: 0 diagnostics")
        expect(panel.locator(".flyte-inputs-run [data-param]").first).to_be_visible()
    finally:
        started = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.terminate()  # `./dev lab` execs jupyter lab: this is the server, which stops its kernels
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(started, timeout=30)
        for child in alive:
            child.kill()
        psutil.wait_procs(alive, timeout=10)
        drain.join(10)
        proc.stdout.close()
        (tmp_path / "dev-lab.log").write_text("".join(log))
        if not had_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    assert (REPO / "example_notebooks" / "quickstart.ipynb").read_bytes() == quickstart  # opened, never changed
