"""The sidebar streams a running task's output (issue 20): the tail of what it prints, read while it runs, as text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.test_lab.conftest import open_panel, write_notebook

pytestmark = [
    pytest.mark.cluster,
    # pytest-playwright 0.10 declares its session fixtures on a class, which pytest 9 deprecates; not ours
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

RUN_TIMEOUT_MS = 150_000


def task_states(lab: Any) -> dict[str, str]:
    from flyte_lab.store import RunStore

    with RunStore.from_env(lab.home, create=False) as store:
        [summary] = store.list_runs()
        return {name: task["status"] for name, task in store.get_run(summary["run_id"])["tasks"].items()}


def test_a_running_tasks_output_streams_into_the_sidebar(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "ticks.ipynb", [
        "%%flyte_task make() -> n: int\nprint('<b>not bold</b>')\nn = 40",
        # a line every 0.5 s for ~20 s: the test reads some of them and cancels the rest
        "%%flyte_task ticks(n: int) -> done: bool\nimport time\nfor i in range(n):\n"
        "    print(f'tick {i}', flush=True)\n    time.sleep(0.5)\ndone = True",
    ])
    open_panel(page, lab, "ticks.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_count(2, timeout=30_000)
    log_reads: list[str] = []
    page.on("request", lambda r: log_reads.append(r.url) if "/tasks/ticks/log" in r.url else None)
    panel.locator(".flyte-run-button").click()

    run = panel.locator(".flyte-run-list .flyte-run")
    ticks = run.locator('.flyte-run-task[data-task="ticks"]')
    # open by itself once running; three of its lines read while the store says it still runs
    expect(ticks.locator("pre.flyte-output")).to_contain_text(re.compile(r"(tick \d+\n){3}"), timeout=RUN_TIMEOUT_MS)
    assert task_states(lab)["ticks"] == "running"
    assert ticks.get_attribute("open") is not None
    assert any("since=" in url and not url.endswith("since=0") for url in log_reads)  # read on, not read again

    # a finished task of the live run, expanded by hand: its line as text, never as HTML
    make = run.locator('.flyte-run-task[data-task="make"]')
    expect(make.locator(".flyte-run-task-status")).to_have_text("succeeded")
    if make.get_attribute("open") is None:  # seen running by a refresh (it opened by itself) or not
        make.locator("summary").click()
    expect(make.locator("pre.flyte-output")).to_have_text("<b>not bold</b>\n")
    expect(make.locator("pre.flyte-output b")).to_have_count(0)

    run.locator(".flyte-cancel").click()
    expect(run.locator(".flyte-run-status")).to_have_text("cancelled", timeout=RUN_TIMEOUT_MS)
    expect(ticks.locator(".flyte-run-task-status")).to_have_text("cancelled")
    assert task_states(lab)["ticks"] == "cancelled"
    shown = ticks.locator("pre.flyte-output").inner_text()
    assert re.search(r"tick \d+\n", shown)  # an ended run keeps the output it showed
    # the task ended and its last lines are read: no more asking
    page.wait_for_timeout(3_000)
    asked = len(log_reads)
    page.wait_for_timeout(3_000)
    assert len(log_reads) == asked, log_reads[asked:]
