"""The dashboard opened from the sidebar's link in a real JupyterLab and Chromium, with only Jupyter running (no
`flyte-lab dashboard`): the Jupyter server serves it behind its own login, and refuses a browser without it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import CLI, cli_env
from tests.test_lab.conftest import open_panel

pytestmark = [
    pytest.mark.cluster,
    # pytest-playwright 0.10 declares its session fixtures on a class, which pytest 9 deprecates; not ours
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

PAGE_TIMEOUT_MS = 60_000  # the first dashboard request imports Panel in the server

# whether a websocket to `url` opens with Bokeh's subprotocol and a session token, from the page's own origin
# (the browser sends the page's cookies)
OPENS = """([url, token]) => new Promise(done => {
    const ws = new WebSocket(url, ['bokeh', token]);
    ws.onopen = () => { ws.close(); done('open'); };
    ws.onerror = () => done('refused');
})"""


def status_cell(tab: Page, text: str) -> Any:
    return tab.locator(f'.tabulator-row:has-text("{text}") [data-status]')


def test_the_sidebars_dashboard_link_opens_the_run_in_jupyters_own_dashboard(page: Page, lab: Any,
                                                                            browser: Browser) -> None:
    done = subprocess.run([*CLI, "run", str(lab.root / "valid_pipeline.ipynb"), "--cluster", "local", "--workers",
                           "1"], env=cli_env(lab.home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=240, check=False)
    assert done.returncode == 0
    open_panel(page, lab, "valid_pipeline.ipynb")
    run = page.locator("#flyte-lab-panel .flyte-run-succeeded")
    expect(run).to_have_count(1, timeout=30_000)
    run_id = run.get_attribute("data-run")
    link = run.locator("a", has_text="dashboard")
    href = link.get_attribute("href")
    assert href == f"/flyte-lab/dashboard/run?id={run_id}"  # on the Jupyter server, wherever Lab is opened from

    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    # the run page, drawn over its websocket from the server's store: the run and each task's state
    expect(tab.locator(".flyte-run-title")).to_contain_text(f"run {run_id}", timeout=PAGE_TIMEOUT_MS)
    expect(tab.locator(".flyte-run-status")).to_have_text("succeeded")
    for task in ("make", "stats"):
        expect(status_cell(tab, task).first).to_have_text("succeeded")
    # its links stay under the prefix: the runs page, and from it the run again
    tab.locator("a", has_text="all runs").click()
    expect(tab).to_have_url(f"{lab.url}flyte-lab/dashboard/")
    expect(status_cell(tab, "valid_pipeline.ipynb")).to_have_text("succeeded", timeout=PAGE_TIMEOUT_MS)
    tab.locator(f'a[href="./run?id={run_id}"]').click()
    expect(tab.locator(".flyte-run-title")).to_contain_text(f"run {run_id}", timeout=PAGE_TIMEOUT_MS)
    if os.environ.get("FLYTE_LAB_DOCS_SCREENSHOTS"):  # the README's picture of the dashboard Jupyter serves
        expect(status_cell(tab, "stats").first).to_have_text("succeeded")
        tab.set_viewport_size({"width": 1280, "height": 860})
        tab.screenshot(path=str(Path(__file__).parents[2] / "docs" / "dashboard-in-jupyter.png"))

    ws = lab.url.replace("http://", "ws://") + "flyte-lab/dashboard/run/ws"
    session = re.search(r'"token":"([^"]+)"', tab.content())  # the session the page was served with
    assert session
    assert tab.evaluate(OPENS, [ws, session[1]]) == "open"  # logged in: the websocket is Bokeh's

    # a browser that has not logged in to Jupyter: the login page, no run, and no websocket either
    stranger = browser.new_context()
    try:
        other = stranger.new_page()
        other.goto(f"{lab.url.rstrip('/')}{href}")
        expect(other).to_have_url(re.compile(r"/login\?next=%2Fflyte-lab%2Fdashboard%2Frun"))
        expect(other.locator("body")).not_to_contain_text(run_id or "")
        assert other.evaluate(OPENS, [ws, session[1]]) == "refused"
    finally:
        stranger.close()
