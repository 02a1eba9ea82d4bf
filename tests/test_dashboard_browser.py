"""The dashboard in real headless Chromium against Panel's real server, on runs made by `flyte-lab run`.

Set FLYTE_LAB_DOCS_SCREENSHOTS=1 to write the README's screenshots into docs/.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from flyte_lab.dashboard import actions
from flyte_lab.store.shared import close_shared_stores
from tests.conftest import CHROMIUM, CLI, NOTEBOOKS, cli_env
from tests.process_helpers import accepts, free_port, kill_home_processes, killpg, spawn, wait_for
from tests.script_probe import marks_by_frame

DOCS = Path(__file__).parent.parent / "docs"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
PAGE_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.cluster,
    # bokeh 3.9's ColumnDataSource.from_df (under every Panel Tabulator) calls pandas' deprecated
    # reset_index(inplace=True); not ours to fix, and only this message is let through under -W error
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index:DeprecationWarning"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright_api.expect


def pipeline(path: Path, divisor: str) -> Path:
    """make -> (total, ratio) -> report; `ratio` divides by `divisor` (cell 5, line 3)."""
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# a pipeline with a failing branch"),
        new_code_cell("%%flyte_setup\nimport math"),
        new_code_cell("%%flyte_task make(n: int = 4) -> xs: list[float]\nxs = [float(i) for i in range(n)]"),
        new_code_cell("%%flyte_task total(xs: list[float]) -> s: float\ns = math.fsum(xs)"),
        new_code_cell(f"%%flyte_task ratio(xs: list[float], divisor: float = {divisor}) -> r: float\n"
                      "scale = 1.0\nr = scale * xs[-1] / divisor"),
        new_code_cell("%%flyte_task report(r: float, s: float)\nprint(r, s)"),
    ], metadata=KERNEL), path)
    return path


def flyte_run(home: Path, notebook: Path) -> None:
    # a private cluster that ends with the run: these tests are about the pages, and a shared executor would
    # outlive them (a Resume/Relaunch from the page reuses the run's stored cluster, so local too)
    subprocess.run([*CLI, "run", "--cluster", "local", str(notebook)], env=cli_env(home), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=240, check=False)


def shot(tab: Any, name: str, tmp: Path) -> None:
    target = DOCS if os.environ.get("FLYTE_LAB_DOCS_SCREENSHOTS") else tmp
    target.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(target / name), full_page=True)


@pytest.fixture(scope="module")
def chrome(browser: Any) -> Any:
    """pytest-playwright's Chromium (see browser_type_launch_args in tests/conftest.py)."""
    return browser


@pytest.fixture
def tab(chrome: Any, dashboard: Any) -> Iterator[Any]:
    """A fresh browser tab, closed before the dashboard stops (so no session is mid-send when it does)."""
    context = chrome.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(autouse=True)
def _reset_panel() -> Iterator[None]:
    """Every Panel server a test starts is stopped, and Panel's global state cleared (or pytest hangs at exit)."""
    yield
    from panel.io.state import state

    state.reset()
    close_shared_stores()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One home with a succeeded and a failed run of the same pipeline (different notebooks)."""
    folder = tmp_path_factory.mktemp("dashboard")
    home = folder / "home"
    flyte_run(home, pipeline(folder / "fine.ipynb", "2.0"))
    flyte_run(home, pipeline(folder / "broken.ipynb", "0.0"))
    from flyte_lab.store import RunStore

    with RunStore(f"sqlite:///{home}/store.db") as store:
        found = {Path(r["notebook"]).name: r for r in store.list_runs()}
    assert found["fine.ipynb"]["status"] == "succeeded" and found["broken.ipynb"]["status"] == "failed"
    return {"home": home, "ok": found["fine.ipynb"]["run_id"], "failed": found["broken.ipynb"]["run_id"]}


@pytest.fixture
def dashboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start a dashboard on a free port for a home: `url = dashboard(home)`; stopped when the test ends."""
    from flyte_lab.dashboard.server import serve

    servers: list[Any] = []

    def start(home: Path) -> str:
        monkeypatch.setenv("FLYTE_LAB_HOME", str(home))
        monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
        port = free_port()
        servers.append(serve("127.0.0.1", port, threaded=True))
        wait_for(lambda: accepts(port), 30, "the dashboard to listen")
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        from panel.io.state import state

        wait_for(lambda: state.session_info["live"] == 0, 30, "the pages' sessions to close")
        for server in servers:
            with contextlib.suppress(RuntimeError):  # "Thread already stopping": a stop is under way
                server.stop()
            server.join(timeout=30)
            assert not server.is_alive(), "the dashboard server did not stop"
        assert actions.wait_all(timeout=180), "a Resume/Relaunch started by the page is still running"


def status_cell(tab: Any, text: str) -> Any:
    return tab.locator(f'.tabulator-row:has-text("{text}") [data-status]')


def test_runs_page_lists_succeeded_and_failed_runs(tab: Any, runs: dict[str, Any], dashboard: Any,
                                                    tmp_path: Path) -> None:
    tab.goto(dashboard(runs["home"]) + "/")
    ok, failed = status_cell(tab, "fine.ipynb"), status_cell(tab, "broken.ipynb")
    ok.wait_for()
    assert ok.inner_text() == "succeeded" and failed.inner_text() == "failed"
    assert tab.locator(f'a[href="./run?id={runs["failed"]}"]').count() == 1
    assert "2 runs · page 1 of 1" in tab.locator(".flyte-count").inner_text()
    shot(tab, "dashboard-runs.png", tmp_path)
    tab.locator("select").first.select_option("failed")  # the status filter
    tab.locator(".flyte-count", has_text="1 runs").wait_for()
    assert tab.locator(".tabulator-row").count() == 1 and status_cell(tab, "broken.ipynb").count() == 1


def test_run_page_shows_graph_timeline_error_and_notebook(tab: Any, runs: dict[str, Any], dashboard: Any,
                                                          tmp_path: Path) -> None:
    tab.goto(dashboard(runs["home"]) + f"/run?id={runs['failed']}")
    tab.locator(".flyte-traceback").wait_for()
    assert tab.locator(".flyte-run-status").inner_text() == "failed"
    for task, status in {"make": "succeeded", "total": "succeeded", "ratio": "failed", "report": "skipped"}.items():
        assert status_cell(tab, task).first.inner_text() == status
    error = tab.locator(".flyte-error").inner_text()
    assert "ZeroDivisionError: float division by zero (cell 5, line 3)" in error
    assert tab.locator(".flyte-debug").inner_text() == f"flyte-lab debug {runs['failed']} ratio"
    notebook = tab.frame_locator(".flyte-notebook iframe").locator("body")
    notebook.get_by_text("Execution using papermill encountered an exception here and stopped").wait_for()
    assert "r = scale * xs[-1] / divisor" in notebook.inner_text()
    # the graph and the timeline are bokeh canvases, drawn with real sizes
    canvases = tab.locator(".bk-Canvas, .bk-canvas-wrapper, canvas")
    canvases.first.wait_for()
    plots = tab.evaluate("""() => {
        const found = [];
        const walk = (root) => root.querySelectorAll('*').forEach(el => {
            if (el.tagName === 'CANVAS') { const r = el.getBoundingClientRect(); found.push([r.width, r.height]); }
            if (el.shadowRoot) walk(el.shadowRoot);
        });
        walk(document);
        return found;
    }""")
    assert sum(1 for w, h in plots if w > 300 and h > 100) >= 2, plots
    shot(tab, "dashboard-run.png", tmp_path)
    # drill down into a succeeded task: its inputs and outputs with previews
    tab.locator(".tabulator-row", has_text="total").locator('.tabulator-cell[tabulator-field="task"]').click()
    tab.locator(".flyte-task-title", has_text="total").wait_for()
    detail = tab.locator(".flyte-io").first.inner_text()
    assert "output of make" in detail and "[0.0, 1.0, 2.0, 3.0]" in detail


# where a task's box is on the screen: the graph's own scales map its data coordinates to canvas pixels
NODE_ON_SCREEN = """(name) => {
    const doc = Bokeh.documents[0];
    const view = Bokeh.index.find_one(doc.get_model_by_name('flyte-graph'));
    const data = doc.get_model_by_name('tasks').data_source.data;
    const i = Array.from(data.name).indexOf(name);
    const box = view.canvas_view.el.getBoundingClientRect();
    return [box.left + view.frame.x_scale.compute(data.x[i]), box.top + view.frame.y_scale.compute(data.y[i])];
}"""
INPUT_NODES = "() => Array.from(Bokeh.documents[0].get_model_by_name('inputs').data_source.data.name).sort()"


def test_clicking_a_graph_node_shows_that_task_and_inputs_are_nodes(tab: Any, runs: dict[str, Any],
                                                                    dashboard: Any) -> None:
    # one click per page load: a second click while the page still applies the first one's update was
    # sometimes not taken as a tap (seen 1 run in 3); a fresh page makes each click the only one in flight
    for task, shown in (("total", "output of make"), ("make", "workflow input (default)")):
        tab.goto(dashboard(runs["home"]) + f"/run?id={runs['failed']}")
        tab.locator(".flyte-task-title", has_text="ratio").wait_for()  # a failed run opens on its failed task
        tab.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                              "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('flyte-graph')) != null")
        assert tab.evaluate(INPUT_NODES) == ["divisor", "n"]  # workflow inputs are nodes of their own
        x, y = tab.evaluate(NODE_ON_SCREEN, task)
        tab.mouse.click(x, y)
        tab.locator(".flyte-task-title", has_text=task).wait_for()
        assert shown in tab.locator(".flyte-io").first.inner_text()


# the timeline's time-axis labels as bokeh draws them, for the view from `start` to `end` (ms; null: as it is)
TIME_LABELS = """([start, end]) => {
    const plot = Bokeh.documents[0].get_model_by_name('flyte-timeline');
    if (start != null) plot.x_range.setv({start, end});
    const view = Bokeh.index.find_one(plot.below[0]);
    return view.compute_labels(view.tick_coords.major[view.dimension]).items.map(label => label.text);
}"""
CLOCK = re.compile(r"\d\d:\d\d(:\d\d(\.\d{3})?)?")


def test_run_page_timeline_reads_clock_times_and_the_wheel_scrolls_the_page(tab: Any, runs: dict[str, Any],
                                                                           dashboard: Any) -> None:
    """Issue 18 item 7: ticks read "800ms / 0ms 17:14:49 / 200ms", and the wheel zoomed the graph once it had
    been clicked."""
    tab.goto(dashboard(runs["home"]) + f"/run?id={runs['ok']}")
    tab.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                          "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('flyte-timeline')) != null && "
                          "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('flyte-graph')) != null")
    labels = tab.evaluate(TIME_LABELS, [None, None])
    start = tab.evaluate("() => Bokeh.documents[0].get_model_by_name('flyte-timeline').x_range.start")
    for span_ms in (1_500, 40_000, 600_000, 7_200_000):  # sub-second, seconds, minutes and hours apart
        labels += tab.evaluate(TIME_LABELS, [start, start + span_ms])
    assert labels and all(CLOCK.fullmatch(label) for label in labels), labels
    assert any("." in label for label in labels)  # sub-second ticks get their milliseconds

    box = tab.evaluate("""() => { const view = Bokeh.index.find_one(
        Bokeh.documents[0].get_model_by_name('flyte-graph')); const r = view.canvas_view.el.getBoundingClientRect();
        return [r.left + r.width / 2, r.top + r.height / 2]; }""")
    graph_range = ("() => { const x = Bokeh.documents[0].get_model_by_name('flyte-graph').x_range; "
                   "return [x.start, x.end]; }")
    before = tab.evaluate(graph_range)
    assert tab.evaluate("() => window.scrollY") == 0
    tab.mouse.click(*box)  # a click focuses the plot: bokeh's default ("auto") then turned the wheel into zoom
    tab.mouse.wheel(0, 300)
    tab.wait_for_function("() => window.scrollY > 0", timeout=10_000)
    assert tab.evaluate(graph_range) == before  # the graph was not zoomed


def test_bad_run_ids_get_a_clear_page(tab: Any, runs: dict[str, Any], dashboard: Any) -> None:
    url = dashboard(runs["home"])
    tab.goto(url + "/run?id=20990101-000000-ffffff")
    expect(tab.locator(".flyte-message-not-found")).to_contain_text("no run `20990101-000000-ffffff`")
    tab.goto(url + "/run?id=%3Cscript%3E")
    expect(tab.locator(".flyte-message-bad-id")).to_contain_text("is not a run id")


def test_empty_store_is_a_friendly_page(tab: Any, dashboard: Any, tmp_path: Path) -> None:
    tab.goto(dashboard(tmp_path / "nothing") + "/")
    expect(tab.locator(".flyte-message-empty")).to_contain_text("Start one with `flyte-lab run NOTEBOOK`")
    assert not (tmp_path / "nothing").exists()  # the dashboard created no store


def test_live_run_changes_on_the_page_without_reload(tab: Any, dashboard: Any, tmp_path: Path) -> None:
    home, flag = tmp_path / "home", tmp_path / "go"
    path = tmp_path / "waits.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os\nimport time"),
        new_code_cell(f"%%flyte_task wait(flag: str = {str(flag)!r}) -> done: bool\n"
                      "while not os.path.exists(flag):  # until the test lets it finish\n"
                      "    time.sleep(0.05)\ndone = True"),
        new_code_cell("%%flyte_task after(done: bool) -> ok: bool\nok = done"),
    ], metadata=KERNEL), path)
    driver = spawn([*CLI, "run", "--cluster", "local", str(path)], home, tmp_path / "run.log")
    try:
        tab.goto(dashboard(home) + "/")
        tab.locator('.tabulator-row:has-text("waits.ipynb") [data-status="running"]').wait_for(timeout=RUN_TIMEOUT_MS)
        tab.locator(".tabulator-row a").first.click()
        status_cell(tab, "wait").and_(tab.locator('[data-status="running"]')).wait_for(timeout=RUN_TIMEOUT_MS)
        assert tab.locator(".flyte-live").count() == 1
        navigations: list[str] = []
        # the page's own frame only: an executed notebook's sandboxed iframe loads its srcdoc as it appears
        tab.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == tab.main_frame else None)
        flag.touch()
        tab.locator('.flyte-run-status [data-status="succeeded"]').wait_for(timeout=RUN_TIMEOUT_MS)
        assert status_cell(tab, "after").inner_text() == "succeeded"
        assert navigations == []  # it changed in place: no reload
        assert driver.wait(timeout=60) == 0
    finally:
        killpg(driver)
        kill_home_processes(home)


def test_resume_after_the_fix_makes_the_run_succeed(tab: Any, dashboard: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    notebook = pipeline(tmp_path / "fixable.ipynb", "0.0")
    flyte_run(home, notebook)
    url = dashboard(home)
    from flyte_lab.store import RunStore

    with RunStore(f"sqlite:///{home}/store.db") as store:
        (run,) = store.list_runs()
    tab.goto(url + f"/run?id={run['run_id']}")
    tab.locator('.flyte-run-status [data-status="failed"]').wait_for()
    pipeline(notebook, "2.0")  # the fix
    tab.get_by_role("button", name="Resume", exact=True).click()
    tab.locator('.flyte-run-status [data-status="succeeded"]').wait_for(timeout=RUN_TIMEOUT_MS)
    assert status_cell(tab, "ratio").inner_text() == "succeeded"
    assert status_cell(tab, "report").inner_text() == "succeeded"
    tab.locator(".flyte-notice", has_text="succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    # Relaunch: a new run of the same notebook and parameters; the page goes to it as soon as it is recorded
    tab.get_by_role("button", name="Relaunch", exact=True).click()
    tab.wait_for_url(lambda now: f"id={run['run_id']}" not in now and "id=" in now, timeout=RUN_TIMEOUT_MS)
    new_id = tab.url.split("id=", 1)[1]
    tab.locator(".flyte-run-title", has_text=new_id).wait_for(timeout=60_000)
    tab.locator('.flyte-run-status [data-status="succeeded"]').wait_for(timeout=RUN_TIMEOUT_MS)
    assert actions.wait_all(timeout=60)
    with RunStore(f"sqlite:///{home}/store.db") as store:
        newest, first = store.list_runs()
    assert first["run_id"] == run["run_id"] and (newest["run_id"], newest["status"]) == (new_id, "succeeded")


def test_a_tasks_html_output_is_shown_without_running_it(tab: Any, dashboard: Any, tmp_path: Path) -> None:
    home, notebook = tmp_path / "home", tmp_path / "html_output_xss.ipynb"
    shutil.copy(NOTEBOOKS / "html_output_xss.ipynb", notebook)
    flyte_run(home, notebook)
    from flyte_lab.store import RunStore

    with RunStore(f"sqlite:///{home}/store.db") as store:
        (run,) = store.list_runs()
    assert run["status"] == "failed"  # the task raises after its outputs: the page opens on it
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    tab.goto(dashboard(home) + f"/run?id={run['run_id']}")
    tab.locator(".flyte-notebook").wait_for()
    # no script of the task's ran, neither in the page nor in any frame, and its <img src=x> fetched nothing
    marks = marks_by_frame(tab)
    assert all(ran is None for ran in marks.values()), marks
    assert not [url for url in requested if url.rsplit("/", 1)[-1] in ("x", "y")], requested
    frame = tab.locator(".flyte-notebook iframe")
    assert frame.get_attribute("sandbox") == ""  # neither allow-scripts nor allow-same-origin
    # the harmless part is shown (the output's <style> hid nothing), the rest as text or not at all
    shown = tab.frame_locator(".flyte-notebook iframe")
    expect(shown.locator("b.harmless")).to_be_visible()
    expect(shown.locator("b.harmless")).to_have_text("harmless bold text")
    expect(shown.locator("table.harmless td")).to_have_text("forty-two")
    expect(shown.locator(".output_svg img")).to_have_count(1)  # the SVG output, as an image (runs nothing)
    expect(shown.locator("a.js-link")).to_have_text("a javascript: link")
    assert shown.locator("a.js-link").get_attribute("href") is None
    expect(shown.locator("body iframe, body script, body style")).to_have_count(0)
    expect(shown.locator(".output_stdout")).to_contain_text('<img src=x onerror="(window.__pwned')
    # the error message and traceback stay escaped text
    expect(tab.locator(".flyte-error")).to_contain_text('RuntimeError: <img src=x onerror="(window.__pwned')
    expect(tab.locator(".flyte-traceback")).to_contain_text('raise RuntimeError(f\'<img src=x onerror=')


# the timeline's bars as the page holds them: task, status and end (ms since the epoch, UTC)
TIMELINE_BARS = """() => {
    const data = Bokeh.documents[0].get_model_by_name('flyte-timeline').renderers[0].data_source.data;
    return Array.from(data.task).map((task, i) => [task, data.status[i], Number(data.end[i])]);
}"""


def test_a_run_cancelled_after_its_driver_died_shows_cancelled_and_its_bars_end(tab: Any, dashboard: Any,
                                                                              tmp_path: Path) -> None:
    """Issue 18 item 1: a cancelled task was `failed`, and an attempt its dead driver left open (a cancel with no
    live driver closed only the run) was drawn as running on, to the time the page was loaded."""
    from datetime import datetime

    from flyte_lab.store import RunStore

    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "stuck.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os\nimport time"),
        new_code_cell(f"%%flyte_task wait(marks: str = {str(marks)!r}) -> done: bool\n"
                      "open(os.path.join(marks, 'started'), 'w').close()\n"
                      "time.sleep(600)\ndone = True"),
        new_code_cell("%%flyte_task after(done: bool) -> ok: bool\nok = done"),
    ], metadata=KERNEL), path)
    driver = spawn([*CLI, "run", "--cluster", "local", str(path)], home, tmp_path / "run.log")
    try:
        wait_for(lambda: (marks / "started").exists(), RUN_TIMEOUT_MS / 1000, "`wait` to start")
    finally:  # the driver dies mid-task (SIGKILL: nothing of it closes anything), its kernel with it
        killpg(driver)
        kill_home_processes(home)
    with RunStore(f"sqlite:///{home}/store.db") as store:
        (run,) = store.list_runs()
    run_id = run["run_id"]
    tab.goto(dashboard(home) + f"/run?id={run_id}")
    tab.locator('.flyte-run-status [data-status="running"]').wait_for()
    tab.get_by_role("button", name="Cancel").click()  # no live driver: the cancel itself records the run's end
    tab.locator('.flyte-run-status [data-status="cancelled"]').wait_for(timeout=RUN_TIMEOUT_MS)
    expect(tab.locator(".flyte-cancelled-by")).to_have_text("cancelled from the dashboard")  # who, once
    expect(tab.locator(".flyte-debug")).to_have_count(0)  # and no debugger offered for the task it stopped
    assert status_cell(tab, "wait").inner_text() == "cancelled"
    assert status_cell(tab, "after").inner_text() == "skipped"
    with RunStore(f"sqlite:///{home}/store.db") as store:
        stored = store.get_run(run_id)
    [attempt] = stored["attempts_detail"]["wait"]
    assert (attempt["status"], stored["cancelled_by"]) == ("cancelled", "dashboard")
    ended_ms = datetime.fromisoformat(attempt["finished_at"]).timestamp() * 1000
    tab.wait_for_function("() => Bokeh.documents[0].get_model_by_name('flyte-timeline').renderers[0]"
                          ".data_source.data.status[0] === 'cancelled'")
    [(task, status, end_ms)] = tab.evaluate(TIMELINE_BARS)
    assert (task, status) == ("wait", "cancelled")
    assert abs(end_ms - ended_ms) < 1, (end_ms, ended_ms)  # the bar ends when the cancel closed the attempt
    tab.reload()  # drawn later, it still ends there: not at the time the page loads
    tab.locator('.flyte-run-status [data-status="cancelled"]').wait_for()
    tab.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                          "Bokeh.documents[0].get_model_by_name('flyte-timeline') != null")
    assert tab.evaluate(TIMELINE_BARS) == [["wait", "cancelled", end_ms]]
