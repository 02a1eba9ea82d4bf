"""A partial run from the sidebar in a real JupyterLab and Chromium: "from here" on a task runs it and what
follows it, on the outputs an earlier run of the notebook left for the tasks before it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.test_lab.conftest import open_panel, write_notebook

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

RUN_TIMEOUT_MS = 150_000
CHAIN = [
    "%load_ext flyte_lab",
    "%%flyte_task a() -> x: int\nx = 1",
    "%%flyte_task b(x: int) -> y: int\ny = x + 1",
    "%%flyte_task c(y: int) -> z: int\nz = y * 10",
]


def test_from_here_runs_the_task_and_what_follows_on_the_last_runs_outputs(page: Page, lab: Any) -> None:
    from flyte_lab.store import RunStore

    write_notebook(lab.root / "chain.ipynb", CHAIN)
    open_panel(page, lab, "chain.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_count(3, timeout=30_000)
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-succeeded")).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    first = panel.locator(".flyte-run-succeeded").get_attribute("data-run")

    # "from here" on `b`: b and c run, a's output comes from the first run
    panel.locator(".flyte-task-list li", has=page.locator('[data-task="b"]')).locator(
        '[data-part="from here"]').click()
    expect(panel.locator(".flyte-run-message")).to_contain_text("started (from b)", timeout=60_000)
    expect(panel.locator(".flyte-run-succeeded")).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    with RunStore.from_env(lab.home, create=False) as store:
        [second] = [r["run_id"] for r in store.list_runs(limit=5) if r["run_id"] != first]
        record = store.get_run(second)
    statuses = {name: task["status"] for name, task in record["tasks"].items()}
    assert statuses == {"a": "reused", "b": "succeeded", "c": "succeeded"}
    assert record["tasks"]["a"]["reused_from"]["run_id"] == first
    assert record["tasks"]["c"]["outputs"]["z"]["preview"] == "20"
