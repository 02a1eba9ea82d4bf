"""The Flyte sidebar in a real JupyterLab and Chromium: tasks, diagnostics, a run, a schedule."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import CLI, cli_env
from tests.process_helpers import failing_map_pipeline
from tests.test_lab.conftest import open_panel

pytestmark = [
    pytest.mark.cluster,
    # pytest-playwright 0.10 declares its session fixtures on a class, which pytest 9 deprecates; not ours
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

RUN_TIMEOUT_MS = 150_000


def open_command_palette(page: Page) -> None:
    """Open Lab's (modal) command palette from the View menu, once Lab has settled. The modal palette closes
    when it loses focus, and Lab moves the focus while a notebook's kernel starts: so wait for the kernel to be
    idle first, and open it again if it was closed under the test all the same (seen in a full browser run)."""
    expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle")).to_be_visible(timeout=60_000)
    palette = page.locator(".lm-CommandPalette-input")
    for _ in range(3):
        page.locator(".lm-MenuBar-item", has_text="View").click()
        page.locator(".lm-Menu-item", has_text="Activate Command Palette").click()
        try:
            palette.wait_for(state="visible", timeout=5_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    expect(palette).to_be_visible()


def test_sidebar_tasks_diagnostics_run_and_schedule(page: Page, lab: Any) -> None:
    open_panel(page, lab, "valid_pipeline.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_text(["make", "stats"], timeout=30_000)
    expect(panel.locator(".flyte-task-list li").first).to_contain_text("(n: int, seed: int) -> raw: pd.DataFrame")
    expect(page.locator(".flyte-status")).to_have_text("Flyte: 0 diagnostics")
    # the command palette offers the run (opened from the View menu: a shortcut pressed while Lab moves the
    # focus after loading was lost under load)
    open_command_palette(page)
    page.locator(".lm-CommandPalette-input").fill("Flyte: Run")
    expect(page.locator(".lm-CommandPalette-item", has_text="Flyte: Run notebook")).to_be_visible()
    page.keyboard.press("Escape")

    # a notebook with a type mismatch: the diagnostic selects its cell
    open_panel(page, lab, "type_mismatch.ipynb")
    diagnostic = panel.locator(".flyte-diagnostic")
    expect(diagnostic).to_contain_text("type-mismatch", timeout=30_000)
    expect(page.locator(".flyte-status")).to_have_text("Flyte: 1 diagnostic")
    cell = json.loads(diagnostic.get_attribute("data-cell") or "0")
    assert cell == 3
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.locator(".jp-Cell").first.click()  # somewhere else first
    expect(notebook.locator(".jp-Cell.jp-mod-active")).not_to_contain_text("consume")
    diagnostic.click()
    expect(notebook.locator(".jp-Cell.jp-mod-active")).to_contain_text("consume")

    # run with an input from the form: the run appears and succeeds
    open_panel(page, lab, "valid_pipeline.ipynb")
    expect(panel.locator(".flyte-task")).to_have_count(2, timeout=30_000)
    panel.locator('.flyte-inputs-run input[data-param="n"]').fill("4")
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-message")).to_contain_text("started", timeout=60_000)
    expect(panel.locator(".flyte-run-list .flyte-run")).to_have_count(1)
    page.reload()  # the run lives in the store, not in the page
    open_panel(page, lab, "valid_pipeline.ipynb")
    expect(panel.locator(".flyte-run-succeeded")).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    run_id = panel.locator(".flyte-run-succeeded").get_attribute("data-run")
    from flyte_lab.store import RunStore

    with RunStore.from_env(lab.home, create=False) as store:
        record = store.get_run(run_id or "")
    assert (record["status"], record["params"]) == ("succeeded", {"n": 4})

    # a schedule: the next five fire times before saving, then the schedule in the list
    panel.locator(".flyte-cron").fill("30 6 * * *")
    expect(panel.locator(".flyte-fire-time")).to_have_count(5)
    expect(panel.locator(".flyte-fire-time").first).to_contain_text("T06:30:00+00:00")
    panel.locator(".flyte-schedule-name").fill("morning")
    panel.locator(".flyte-schedule-save").click()
    expect(panel.locator('.flyte-schedule[data-schedule="morning"]')).to_contain_text("30 6 * * *")


def test_a_failed_run_shows_how_far_it_got_not_a_full_bar(page: Page, lab: Any) -> None:
    notebook = failing_map_pipeline(lab.root / "fails.ipynb")
    done = subprocess.run([*CLI, "run", str(notebook), "--cluster", "local", "--workers", "1"], env=cli_env(lab.home),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240, check=False)
    assert done.returncode == 1
    open_panel(page, lab, "fails.ipynb")
    run = page.locator("#flyte-lab-panel .flyte-run-failed")
    expect(run).to_have_count(1, timeout=30_000)
    # 4 of 5 (make, and square's 3 elements), as the widget and the dashboard count: the failed `total` is not
    expect(run).to_contain_text(" 4/5 ")
    progress = run.locator("progress")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("4", "5")
    expect(run.locator(".flyte-cancel")).to_have_count(0)  # nothing left to cancel
    expect(run.locator(".flyte-run-error-cell")).to_contain_text("total: ZeroDivisionError")
