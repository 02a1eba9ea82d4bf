"""Resume and Relaunch from the sidebar, and the executed notebook opened at its failing cell, in real Chromium.

Runs are real (a launcher process, the shared executor, papermill kernels); the store is the test's own.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.test_lab.conftest import docs_screenshot, open_panel, write_notebook
from tests.test_lab.test_forms import BROKEN, RUN_TIMEOUT_MS, stored

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

FIXED = [*BROKEN[:-1], "%%flyte_task divide(k: int) -> q: float\nq = math.pi / (k + 1)"]


def test_resume_continues_a_failed_run_after_the_fix_and_relaunch_shows_the_new_run(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "broken.ipynb", BROKEN, parameters_cell=2)
    open_panel(page, lab, "broken.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_text(["divide"], timeout=30_000)
    panel.locator(".flyte-run-button").click()
    failed = panel.locator(".flyte-run-failed")
    expect(failed).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    run_id = failed.get_attribute("data-run")

    # the executed notebook: at its failing cell, the run context collapsed
    panel.locator(".flyte-open-executed").click()
    view = page.locator(".flyte-executed:not(.lm-mod-hidden)")
    failing = view.locator(".flyte-failing-cell")
    expect(failing).to_have_count(1, timeout=30_000)
    expect(failing).to_contain_text("math.pi / k")
    expect(failing.locator(".jp-OutputArea-output")).to_contain_text("ZeroDivisionError")
    expect(failing).to_be_in_viewport()
    context = view.locator(".jp-CodeCell").first
    expect(context.locator(".jp-Cell-inputWrapper .jp-InputPlaceholder")).to_be_visible()
    expect(view).not_to_contain_text("cache_dir")  # its dict of internal paths is not shown

    # fixed on disk (not through the editor), then resumed from the sidebar: the same run, now succeeded
    write_notebook(lab.root / "broken.ipynb", FIXED, parameters_cell=2)
    item = panel.locator(f'.flyte-run[data-run="{run_id}"]')
    expect(item.locator(".flyte-cancel")).to_have_count(0)
    item.locator(".flyte-resume").click()
    expect(panel.locator(f'.flyte-run-succeeded[data-run="{run_id}"]')).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    with stored(lab) as store:
        assert [r["run_id"] for r in store.list_runs()] == [run_id]  # continued, not a new run
        record = store.get_run(run_id)
    assert record["status"] == "succeeded"
    assert record["tasks"]["divide"]["outputs"]["q"]["preview"].startswith("3.14159")  # pi / (0 + 1): the fix ran
    expect(panel.locator(f'.flyte-run[data-run="{run_id}"] .flyte-resume')).to_have_count(0)  # nothing to resume

    # Relaunch: a new run, shown at the top of the list and marked as the one just started
    panel.locator(f'.flyte-run[data-run="{run_id}"] .flyte-relaunch').click()
    new = panel.locator(".flyte-run-new")
    expect(new).to_have_count(1, timeout=30_000)
    new_id = new.get_attribute("data-run")
    assert new_id and new_id != run_id
    expect(panel.locator(".flyte-run").first).to_have_attribute("data-run", new_id)
    expect(panel.locator(f'.flyte-run-succeeded[data-run="{new_id}"]')).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    docs_screenshot(page, "sidebar-resumed")
