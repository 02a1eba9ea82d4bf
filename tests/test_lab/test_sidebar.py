"""The Flyte sidebar in a real JupyterLab and Chromium: tasks, diagnostics, a run, a schedule."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import CLI, cli_env
from tests.process_helpers import failing_map_pipeline
from tests.test_lab.conftest import docs_screenshot, open_panel

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


def test_a_run_cancelled_from_the_sidebar_shows_cancelled_and_who_cancelled_it(page: Page, lab: Any) -> None:
    """Issue 18 items 1 and 2: its stopped task was `failed`, shown as "Cancelled: cancelled by `flyte-lab cancel`
    (cell 2, line ?)" as if a place in the code were at fault."""
    from tests.test_lab.conftest import write_notebook

    marks = lab.root / "marks"
    marks.mkdir()
    write_notebook(lab.root / "waits.ipynb", [
        f"marks = {str(marks)!r}",
        "%%flyte_task wait(marks: str) -> done: bool\nimport os, time\n"
        "open(os.path.join(marks, 'started'), 'w').close()\ntime.sleep(600)\ndone = True",
        "%%flyte_task after(done: bool) -> ok: bool\nok = done",
    ], parameters_cell=0)
    open_panel(page, lab, "waits.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_count(2, timeout=30_000)
    panel.locator(".flyte-run-button").click()
    run = panel.locator(".flyte-run-list .flyte-run")
    expect(run.locator(".flyte-cancel")).to_have_count(1, timeout=60_000)
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while not (marks / "started").exists():  # the task's kernel is running it: a cancel stops a running task
        assert time.monotonic() < deadline, "the task never started"
        page.wait_for_timeout(100)
    run.locator(".flyte-cancel").click()

    cancelled = panel.locator(".flyte-run-cancelled")
    expect(cancelled.locator(".flyte-run-status")).to_have_text("cancelled", timeout=RUN_TIMEOUT_MS)
    expect(cancelled.locator(".flyte-run-cancelled-by")).to_have_text("cancelled from the JupyterLab sidebar")
    expect(cancelled.locator(".flyte-run-error-cell")).to_have_count(0)  # no cell or line to look at
    expect(cancelled).not_to_contain_text("line ?")
    expect(cancelled.locator(".flyte-cancel")).to_have_count(0)
    # progress: nothing finished successfully (0 of 2), as the widget and the dashboard count, not a full bar
    expect(cancelled).to_contain_text(" 0/2 ")
    progress = cancelled.locator("progress")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("0", "2")
    colour = cancelled.locator(".flyte-run-status").evaluate("e => getComputedStyle(e).color")
    plain = panel.locator("h3").first.evaluate("e => getComputedStyle(e).color")
    assert colour != plain  # styled as a state of its own
    docs_screenshot(page, "sidebar-cancelled")

    from flyte_lab.store import RunStore

    with RunStore.from_env(lab.home, create=False) as store:
        [summary] = store.list_runs()
        record = store.get_run(summary["run_id"])
    assert (record["status"], record["cancelled_by"]) == ("cancelled", "sidebar")
    assert {n: t["status"] for n, t in record["tasks"].items()} == {"wait": "cancelled", "after": "skipped"}


def test_a_refused_run_shows_its_one_refusal(page: Page, lab: Any) -> None:
    """Issue 18 item 2: a launch refused for the notebook's errors showed the error twice (under Run and in the
    diagnostics)."""
    open_panel(page, lab, "type_mismatch.ipynb")
    panel = page.locator("#flyte-lab-panel")
    diagnostic = panel.locator(".flyte-diagnostic")
    expect(diagnostic).to_contain_text("type-mismatch", timeout=30_000)
    said = diagnostic.inner_text()
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-message")).to_have_text("refused: 1 error in the notebook (listed above)",
                                                             timeout=60_000)
    expect(diagnostic).to_have_count(1)
    assert panel.inner_text().count("type-mismatch") == 1, panel.inner_text()
    assert said in diagnostic.inner_text()
    expect(panel.locator(".flyte-run-list .flyte-run")).to_have_count(0)  # no run, so no empty bar either
