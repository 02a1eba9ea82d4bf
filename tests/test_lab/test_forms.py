"""The sidebar's typed input form, its schedule form and a failed task's executed notebook, in real Chromium.

Runs are real (a launcher process, a local Dask cluster, papermill kernels); the store is the test's own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.test_lab.conftest import open_panel, write_notebook

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

RUN_TIMEOUT_MS = 150_000
TYPED = [
    "%load_ext flyte_lab",
    "%%flyte_setup\nimport datetime",
    "count = 3\nverbose = False\nday = '2024-01-02'",
    "%%flyte_task summarize(count: int, verbose: bool, day: datetime.date, ratio: float = 0.5, "
    "tags: list[str] = ['a']) -> text: str\n"
    "text = f'{count} {verbose} {day.isoformat()} {ratio} {tags}'",
]
BROKEN = [
    "%load_ext flyte_lab",
    "%%flyte_setup\nimport math",
    "k = 0",
    "%%flyte_task divide(k: int) -> q: float\nq = math.pi / k",
]


def stored(lab: Any) -> Any:
    from flyte_lab.store import RunStore

    return RunStore.from_env(lab.home, create=False)


def served_spec(lab: Any) -> dict[str, Any]:
    """The schedule spec's fields as this server serves them to the sidebar (`GET /flyte-lab/api/config`)."""
    import urllib.request

    request = urllib.request.Request(f"{lab.url}flyte-lab/api/config",
                                     headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["schedule_spec"]["properties"]  # type: ignore[no-any-return]


def test_typed_form_runs_with_its_values_and_schedules(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "typed.ipynb", TYPED, parameters_cell=2)
    open_panel(page, lab, "typed.ipynb")
    panel = page.locator("#flyte-lab-panel")
    form = panel.locator(".flyte-inputs-run")
    count, verbose, day = (form.locator(f'[data-param="{n}"]') for n in ("count", "verbose", "day"))
    ratio, tags = form.locator('[data-param="ratio"]'), form.locator('[data-param="tags"]')

    # one control per declared type, defaults filled in
    expect(count).to_have_attribute("type", "number", timeout=30_000)
    expect(count).to_have_attribute("step", "1")
    expect(count).to_have_value("3")
    expect(ratio).to_have_attribute("step", "any")
    expect(ratio).to_have_value("0.5")
    expect(verbose).to_have_attribute("type", "checkbox")
    expect(verbose).not_to_be_checked()
    expect(day).to_have_attribute("type", "date")
    expect(day).to_have_value("2024-01-02")
    assert tags.evaluate("e => e.tagName") == "TEXTAREA"
    expect(tags).to_have_value('["a"]')

    # bad values are shown at their input, and nothing is sent
    tags.fill('["b",')
    expect(form.locator('[data-error-for="tags"]')).to_contain_text("not JSON")
    count.fill("2.5")
    expect(form.locator('[data-error-for="count"]')).to_have_text("not a whole number")
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-message")).to_have_text("fix the inputs marked above")
    tags.fill('{"b": 1}')
    expect(form.locator('[data-error-for="tags"]')).to_have_text("write a JSON list, e.g. [1, 2]")

    # changed values run, and are the run's parameters
    count.fill("7")
    verbose.check()
    day.fill("2024-03-05")
    tags.fill('["b", "c"]')
    expect(form.locator(".flyte-invalid")).to_have_count(0)
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-message")).to_contain_text("started", timeout=60_000)
    expect(panel.locator(".flyte-run-succeeded")).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    with stored(lab) as store:
        [run] = store.list_runs(limit=5)
        record = store.get_run(run["run_id"])
    assert record["params"] == {"count": 7, "verbose": True, "day": "2024-03-05", "tags": ["b", "c"]}
    assert json.loads(record["tasks"]["summarize"]["outputs"]["text"]["preview"]) == "7 True 2024-03-05 0.5 ['b', 'c']"

    # a schedule with what `schedule add` takes: every, start, the same input form, catch-up, overlap, notify
    sched = panel.locator(".flyte-schedule-form")
    # its defaults, bounds and choices are the server's schedule spec
    spec = served_spec(lab)
    expect(sched.locator(".flyte-timezone")).to_have_value(spec["timezone"]["default"])
    for box, name in ((".flyte-max-catchup", "max_catchup"), (".flyte-max-active", "max_active")):
        expect(sched.locator(box)).to_have_value(str(spec[name]["default"]))
        expect(sched.locator(box)).to_have_attribute("min", str(spec[name]["minimum"]))
        expect(sched.locator(box)).to_have_attribute("max", str(spec[name]["maximum"]))
    expect(sched.locator(".flyte-overlap option")).to_have_text(spec["overlap"]["enum"])
    expect(sched.locator(".flyte-overlap")).to_have_value(spec["overlap"]["default"])
    expect(sched.locator(".flyte-catchup")).not_to_be_checked()
    assert spec["catchup"]["default"] is False
    sched.locator(".flyte-schedule-kind").select_option("every")
    sched.locator(".flyte-every").fill("15m")
    sched.locator(".flyte-start").fill("2030-01-01T06:00")
    fires = sched.locator(".flyte-fire-time")
    expect(fires).to_have_count(5)
    expect(fires.nth(0)).to_have_text("2030-01-01T06:00:00+00:00")
    expect(fires.nth(1)).to_have_text("2030-01-01T06:15:00+00:00")
    expect(sched.locator('[data-param="count"]')).to_have_value("3")  # its own form, from the defaults
    sched.locator('[data-param="count"]').fill("9")
    sched.locator(".flyte-catchup").check()
    sched.locator(".flyte-max-catchup").fill("3")
    sched.locator(".flyte-max-active").fill("2")
    sched.locator(".flyte-overlap").select_option("queue")
    sched.locator(".flyte-notify-add").click()
    expect(sched.locator(".flyte-notify-event option")).to_have_text(spec["notify"]["events"])
    sched.locator(".flyte-notify-event").select_option("failed")
    sched.locator(".flyte-notify-url").fill("ftp://hooks.example.com/x")
    sched.locator(".flyte-schedule-name").fill("typed-often")
    sched.locator(".flyte-schedule-save").click()
    expect(sched.locator(".flyte-schedule-message")).to_contain_text("expected an http://")  # the server's word
    sched.locator(".flyte-notify-url").fill("https://hooks.example.com/services/T0/B0/secretkey")
    sched.locator(".flyte-schedule-save").click()
    expect(sched.locator(".flyte-schedule-message")).to_have_text("schedule typed-often saved")
    item = panel.locator('.flyte-schedule[data-schedule="typed-often"]')
    for text in ("every 900s", "catch-up (at most 3)", "max active 2, overlap queue", "-p count=9", "notify failed="):
        expect(item).to_contain_text(text)
    expect(item).not_to_contain_text("secretkey")
    with stored(lab) as store:
        [row] = store.list_schedules()
    assert (row["every_s"], row["params"], row["catchup"], row["max_catchup"], row["max_active"], row["overlap"]) \
        == (900, {"count": "9"}, True, 3, 2, "queue")
    assert row["notify"] == ["failed=https://hooks.example.com/services/T0/B0/secretkey"]


def test_failed_task_opens_its_executed_notebook(page: Page, lab: Any) -> None:
    write_notebook(lab.root / "broken.ipynb", BROKEN, parameters_cell=2)
    open_panel(page, lab, "broken.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_text(["divide"], timeout=30_000)
    panel.locator(".flyte-run-button").click()
    expect(panel.locator(".flyte-run-failed")).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    expect(panel.locator(".flyte-run-error-cell")).to_contain_text("ZeroDivisionError")
    panel.locator(".flyte-open-executed").click()

    view = page.locator(".flyte-executed:not(.lm-mod-hidden)")
    expect(view.locator(".jp-Notebook")).to_be_visible(timeout=30_000)
    failing = view.locator(".jp-CodeCell", has_text="math.pi / k")
    expect(failing.locator(".jp-OutputArea-output")).to_contain_text("ZeroDivisionError")
    expect(failing.locator(".jp-OutputArea-output")).to_contain_text("division by zero")
    # read-only: every editor is, typing changes nothing, and the tab says so
    editors = view.locator(".jp-CodeCell .cm-editor")
    assert editors.count() >= 2
    expect(view.locator(".jp-CodeCell .cm-editor:not(.jp-mod-readOnly)")).to_have_count(0)
    source = failing.locator(".cm-content")
    expect(source).to_have_attribute("aria-readonly", "true")
    before = source.text_content()
    source.click()
    page.keyboard.type("zzz")
    page.keyboard.press("Enter")
    expect(source).not_to_contain_text("zzz")
    assert source.text_content() == before
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text("(read-only)")
    # asked again: the same tab comes forward
    panel.locator(".flyte-open-executed").click()
    expect(page.locator(".flyte-executed")).to_have_count(1)
