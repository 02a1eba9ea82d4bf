"""The sidebar keeps its place and each notebook's form, says how to start, and follows a renamed notebook: in a
real JupyterLab and Chromium."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import CLI, cli_env
from tests.test_lab.conftest import open_panel, write_notebook

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

FLYTE_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="flyte-lab-panel"]'
FILES_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]'


def notebook_tab(page: Page, name: str) -> Any:
    return page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)


def wait_for_saved_layout(lab: Any, saved: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until Lab stored the workspace with a layout `saved` accepts (it saves its layout a little after a
    change, maybe after other saves): a reload before that would restore the layout before it."""
    import time

    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"{lab.url}lab/api/workspaces/default?token={lab.token}", timeout=10) as answer:
            layout = json.loads(answer.read())["data"].get("layout-restorer:data", {})
        if saved(layout) or time.monotonic() > deadline:
            assert saved(layout), layout
            return
        time.sleep(0.1)


def wait_for_saved_left_panel(lab: Any, widget: str) -> None:
    wait_for_saved_layout(lab, lambda layout: layout.get("left", {}).get("current") == widget)


def test_the_sidebar_opens_on_first_use_and_stays_as_left_after_a_reload(page: Page, lab: Any) -> None:
    page.goto(lab.open("valid_pipeline.ipynb"))
    # a new workspace opens on the Flyte sidebar, no click needed
    expect(page.locator("#flyte-lab-panel")).to_be_visible(timeout=60_000)
    expect(page.locator(FLYTE_TAB)).to_have_attribute("aria-selected", "true")
    expect(page.locator("#flyte-lab-panel .flyte-task")).to_have_count(2, timeout=30_000)
    page.reload()
    expect(page.locator("#flyte-lab-panel .flyte-task")).to_have_count(2, timeout=60_000)
    expect(page.locator(FLYTE_TAB)).to_have_attribute("aria-selected", "true")
    # a user who switched to the file browser finds the file browser after a reload, not the sidebar forced open
    page.locator(FILES_TAB).click()
    wait_for_saved_left_panel(lab, "filebrowser")
    page.reload()
    expect(page.locator(FILES_TAB)).to_have_attribute("aria-selected", "true", timeout=60_000)
    expect(page.locator(FLYTE_TAB)).to_have_attribute("aria-selected", "false")


def test_each_notebook_keeps_its_own_forms_and_a_bad_number_is_flagged(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "other.ipynb", ["%load_ext flyte_lab", "k = 2",
                                              "%%flyte_task twice(k: int) -> doubled: int\ndoubled = 2 * k"],
                   parameters_cell=1)
    open_panel(page, lab, "other.ipynb")
    # the next page load restores the other notebook's tab beside it, once Lab has stored its layout
    wait_for_saved_layout(lab, lambda layout: "notebook:other.ipynb" in json.dumps(layout.get("main", {})))
    open_panel(page, lab, "valid_pipeline.ipynb")
    expect(notebook_tab(page, "other.ipynb")).to_have_count(1, timeout=30_000)
    panel = page.locator("#flyte-lab-panel")
    run_n = panel.locator('.flyte-inputs-run [data-param="n"]')
    expect(run_n).to_have_value("10", timeout=30_000)
    run_n.fill("4")
    panel.locator(".flyte-schedule-name").fill("alpha")
    panel.locator(".flyte-cron").fill("30 6 * * *")
    expect(panel.locator(".flyte-fire-time")).to_have_count(5)
    # letters in a number field are refused, not sent as nothing (which the server would fill with its default)
    panel.locator(".flyte-max-active").press_sequentially("1e")
    panel.locator(".flyte-schedule-save").click()
    expect(panel.locator(".flyte-schedule-message")).to_have_text("runs at once (max active): not a whole number")
    panel.locator(".flyte-max-active").fill("2")
    panel.locator(".flyte-schedule-save").click()
    expect(panel.locator(".flyte-schedule-message")).to_have_text("schedule alpha saved")

    notebook_tab(page, "other.ipynb").click()
    expect(panel.locator(".flyte-path")).to_have_text("other.ipynb")
    expect(panel.locator('.flyte-inputs-run [data-param="k"]')).to_have_value("2", timeout=30_000)
    expect(panel.locator('.flyte-inputs-run [data-param="n"]')).to_have_count(0)
    for field in (".flyte-schedule-name", ".flyte-cron"):  # another notebook's form starts fresh
        expect(panel.locator(field)).to_have_value("")
    expect(panel.locator(".flyte-schedule-message")).to_have_text("")
    expect(panel.locator(".flyte-max-active")).to_have_value("1")

    notebook_tab(page, "valid_pipeline.ipynb").click()
    expect(panel.locator(".flyte-path")).to_have_text("valid_pipeline.ipynb")
    expect(run_n).to_have_value("4")
    expect(panel.locator(".flyte-schedule-name")).to_have_value("alpha")
    expect(panel.locator(".flyte-cron")).to_have_value("30 6 * * *")
    expect(panel.locator(".flyte-max-active")).to_have_value("2")
    expect(panel.locator(".flyte-schedule-message")).to_have_text("schedule alpha saved")


def test_an_empty_notebook_says_how_to_start_and_options_read_as_written(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "empty.ipynb", [""])
    write_notebook(lab.root / "options.ipynb", [
        "%load_ext flyte_lab",
        "%%flyte_task fetch() -> n: int --cache-version v2 --retries 2\nn = 1"])
    open_panel(page, lab, "empty.ipynb")
    hint = page.locator("#flyte-lab-panel .flyte-empty-hint")
    expect(hint).to_be_visible(timeout=30_000)
    expect(hint.locator(".flyte-starter-cell").nth(1)).to_contain_text("%%flyte_task greet(name: str) -> greeting: str")
    open_panel(page, lab, "options.ipynb")
    resources = page.locator("#flyte-lab-panel .flyte-resources")
    expect(resources).to_contain_text("--cache-version v2", timeout=30_000)
    expect(resources).not_to_contain_text("cache_version")
    expect(page.locator("#flyte-lab-panel .flyte-empty-hint")).to_have_count(0)


def test_a_refusal_under_run_goes_once_the_notebook_is_fixed(page: Page, lab: Any) -> None:
    open_panel(page, lab, "type_mismatch.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-diagnostic")).to_contain_text("type-mismatch", timeout=30_000)
    panel.locator(".flyte-run-button").click()
    message = panel.locator(".flyte-run-message")
    expect(message).to_contain_text("refused: 1 error in the notebook", timeout=30_000)
    # fix the producer in the editor: `count` becomes an int
    editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(1).locator(".cm-content")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("%%flyte_task produce() -> count: int\ncount = 3")
    expect(panel.locator(".flyte-diagnostic")).to_have_count(0, timeout=30_000)
    expect(message).to_have_text("")


def test_a_notebook_renamed_through_jupyter_keeps_its_runs(page: Page, lab: Any) -> None:
    from flyte_lab.statuses import RunStatus
    from flyte_lab.store import RunStore

    graph = {"tasks": [{"name": "make", "cell": 5}], "edges": [], "workflow_inputs": {}}
    with RunStore.from_env(lab.home) as store:
        run_id = store.create_run(str((lab.root / "valid_pipeline.ipynb").resolve()), {}, graph,
                                  [{"name": "make", "cell": 5}], "local", notebook_hash="h")
        store.set_run_status(run_id, RunStatus.SUCCEEDED)
    # the contents API, as Lab's file browser renames
    request = urllib.request.Request(f"{lab.url}api/contents/valid_pipeline.ipynb?token={lab.token}", method="PATCH",
                                     data=json.dumps({"path": "pipeline v2.ipynb"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    open_panel(page, lab, "pipeline%20v2.ipynb")
    expect(page.locator(f'#flyte-lab-panel .flyte-run[data-run="{run_id}"]')).to_be_visible(timeout=30_000)
    listed = subprocess.run([*CLI, "runs", "--notebook", str(lab.root / "pipeline v2.ipynb"), "--json"],
                            env=cli_env(lab.home), capture_output=True, text=True, timeout=60, check=True)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
