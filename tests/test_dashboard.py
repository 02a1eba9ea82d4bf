"""The dashboard without a browser: its pure row builders, store access (empty, newer schema), pages on bad input,
and the real `flyte-lab dashboard` process."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.dashboard import table_rows
from flyte_lab.dashboard.run_graph import positions
from flyte_lab.dashboard.store_access import StoreProblem, open_store
from flyte_lab.store.shared import close_shared_stores
from tests.conftest import CLI, cli_env
from tests.process_helpers import accepts, free_port, killpg, wait_for

GRAPH = {
    "tasks": [
        {"name": "make", "cell": 3, "inputs": {"n": "int"}, "outputs": {"xs": "list[float]"}, "options": {}},
        {"name": "total", "cell": 4, "inputs": {"xs": "list[float]"}, "outputs": {"s": "float"}, "options": {}},
        {"name": "ratio", "cell": 5, "inputs": {"xs": "list[float]", "divisor": "float"}, "outputs": {"r": "float"},
         "options": {}},
        {"name": "report", "cell": 6, "inputs": {"r": "float", "s": "float"}, "outputs": {}, "options": {}},
    ],
    "edges": [["make", "total", "xs"], ["make", "ratio", "xs"], ["ratio", "report", "r"], ["total", "report", "s"]],
    "workflow_inputs": {"n": {"type": "int", "default": 4}, "divisor": {"type": "float", "default": 0.0}},
    "diagnostics": [],
}


def attempt(number: int, status: str, start: str, end: str | None) -> dict[str, Any]:
    return {"number": number, "status": status, "worker": None, "started_at": start, "finished_at": end,
            "output_notebook": f"/x/attempt-{number}.ipynb", "error": None, "kind": None}


RUN = {
    "run_id": "20260101-000000-abcdef", "notebook": "/nb/pipe.ipynb", "status": "running", "params": {"n": 5},
    "created_at": "2026-01-01T00:00:00+00:00", "started_at": "2026-01-01T00:00:01+00:00", "finished_at": None,
    "tasks": {
        "make": {"status": "succeeded", "attempts": 1, "cell": 3, "duration_s": 0.5, "resources": {"CPU": 2},
                 "outputs": {"xs": {"type": "list[float]", "preview": "[0.0, 1.0]", "uri": "file:///a"}},
                 "error": None},
        "total": {"status": "cached", "attempts": 0, "cell": 4, "duration_s": None, "resources": {}, "outputs": {},
                  "error": None},
        "ratio": {"status": "running", "attempts": 2, "cell": 5, "duration_s": None, "resources": {}, "outputs": {},
                  "error": {"type": "ZeroDivisionError", "message": "float division by zero", "cell": 5, "line": 3}},
        "report": {"status": "queued", "attempts": 0, "cell": 6, "duration_s": None, "resources": {}, "outputs": {},
                   "error": None},
    },
    "attempts_detail": {
        "make": [attempt(1, "succeeded", "2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00")],
        "ratio": [attempt(2, "running", "2026-01-01T00:00:04+00:00", None),
                  attempt(1, "failed", "2026-01-01T00:00:02+00:00", "2026-01-01T00:00:03+00:00")],
    },
}
NOW = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    yield
    close_shared_stores()


def test_run_row_counts_tasks_and_times_a_live_run_to_now() -> None:
    row = table_rows.run_row({**RUN, "schedule": "nightly"}, NOW)
    assert row == {"run": RUN["run_id"], "notebook": "pipe.ipynb", "status": "running", "start": "2026-01-01 00:00:01",
                   "duration": "9.00s", "tasks done": "2/4", "tasks failed": 0, "schedule": "nightly"}


def test_pages_are_clamped_slices() -> None:
    assert table_rows.page_slice(0, 1, 25) == (0, 0, 1)
    assert table_rows.page_slice(10_000, 2, 25) == (25, 50, 400)
    assert table_rows.page_slice(51, 9, 25) == (50, 51, 3)  # past the end: the last page


def test_attempt_bars_cover_every_attempt_in_time_order() -> None:
    bars = table_rows.attempt_bars(RUN, NOW)
    assert [(b["task"], b["attempt"], b["status"]) for b in bars] == [
        ("make", 1, "succeeded"), ("ratio", 1, "failed"), ("ratio", 2, "running")]
    assert bars[-1]["end"] == NOW.replace(tzinfo=None) and bars[-1]["worker"] == "local"


def test_task_inputs_name_their_source_and_preview() -> None:
    assert table_rows.task_inputs(GRAPH, RUN, "ratio") == [
        {"name": "xs", "type": "list[float]", "from": "output of make", "preview": "[0.0, 1.0]"},
        {"name": "divisor", "type": "float", "from": "workflow input (default)", "preview": "0.0"}]
    assert table_rows.task_inputs(GRAPH, RUN, "make")[0] == {"name": "n", "type": "int", "from": "workflow input (-p)",
                                                         "preview": "5"}
    assert table_rows.task_inputs(GRAPH, RUN, "report")[1]["preview"] == "(not produced)"


def test_task_rows_and_error_text() -> None:
    rows = {r["task"]: r for r in table_rows.task_rows(RUN)}
    assert rows["make"]["resources"] == "CPU=2" and rows["total"]["cached"] == "yes"
    assert table_rows.error_text(RUN["tasks"]["ratio"]["error"]) == (
        "ZeroDivisionError: float division by zero (cell 5, line 3)")
    assert table_rows.error_text(None) == ""
    assert table_rows.debug_command("r1", "ratio") == "flyte-lab debug r1 ratio"


@pytest.mark.parametrize(("dirty", "kept"), [
    ('<b>x</b><img src=x onerror="alert(1)">', "<b>x</b><img>"),
    ("<script>alert(1)</script><style>b{}</style>ok", "ok"),
    ('<svg onload="alert(1)"><circle r="1"/></svg>ok', "ok"),
    ('<a href=" JavaScript:alert(1)">a</a>', '<a rel="noopener noreferrer">a</a>'),
    ('<a href="data:text/html,<script>1</script>">a</a>', '<a rel="noopener noreferrer">a</a>'),
    ('<a href="https://example.org/">a</a>', '<a href="https://example.org/" rel="noopener noreferrer">a</a>'),
    ('<img src="https://example.org/track.png"><img src="data:image/png;base64,AA==">',
     '<img><img src="data:image/png;base64,AA==">'),
    ('<iframe srcdoc="<script>1</script>"></iframe><form action="/x"><input></form>ok', "ok"),
    ('<details open ontoggle="alert(1)">d</details>', '<details open="">d</details>'),
    ('<div style="color: red; position: fixed; background: url(x)">s</div>', '<div style="color:red">s</div>'),
    ('<table class="dataframe"><thead><tr><th>a</th></tr></thead></table>',
     '<table class="dataframe"><thead><tr><th>a</th></tr></thead></table>'),
])
def test_notebook_html_keeps_only_harmless_markup(dirty: str, kept: str) -> None:
    from flyte_lab.dashboard.notebook_view import clean

    assert clean(dirty) == kept


def test_notebook_is_shown_in_a_frame_that_runs_and_loads_nothing() -> None:
    import html

    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from flyte_lab.dashboard.notebook_view import render

    cell = new_code_cell("show()")
    cell.outputs = [new_output("display_data", data={"text/html": "<b>kept</b><script>alert(1)</script>",
                                                     "text/plain": "p"}),
                    new_output("display_data", data={"application/javascript": "alert(2)", "text/plain": "js"})]
    frame = render(new_notebook(cells=[cell]), 'executed notebook "x"')
    assert frame.startswith('<iframe class="flyte-notebook-frame" sandbox="" ')  # no allow-scripts, no same origin
    assert frame.count("<") == 2 and "srcdoc=" in frame  # the document is one escaped attribute
    document = html.unescape(frame.split('srcdoc="', 1)[1].rsplit('"', 1)[0])
    assert "Content-Security-Policy\" content=\"default-src 'none'; img-src data:;" in document
    assert "<b>kept</b>" in document and "alert" not in document and "<script" not in document


def test_run_context_cell_is_shown_collapsed() -> None:
    import html

    from nbformat.v4 import new_code_cell, new_notebook

    from flyte_lab.dashboard.notebook_view import COLLAPSED, render

    context = new_code_cell("# Parameters\nflyte_context = {'artifact_root': '/home/secret/path'}\nprelude()")
    context.metadata["tags"] = ["injected-parameters", "flyte-prelude"]
    body = new_code_cell("q = math.pi / k")
    nb = new_notebook(cells=[context, body])
    document = html.unescape(render(nb, "x"))
    text = html.unescape(re.sub(r"<[^>]+>", "", document))  # the cells' text, without the highlighter's spans
    assert "artifact_root" not in document and "/home/secret/path" not in document
    assert COLLAPSED in text and "math.pi / k" in text
    assert "flyte_context" in nb.cells[0].source  # the caller's notebook is left as it was


def test_graph_reads_left_to_right() -> None:
    where = positions(GRAPH)
    for src, dst, _ in GRAPH["edges"]:
        assert where[src][0] < where[dst][0], (src, dst)
    assert where["total"][0] == where["ratio"][0] and where["total"][1] != where["ratio"][1]


def test_runs_page_reads_one_page_from_the_store(home: Path) -> None:
    """Paging happens in SQL: no query of the runs page reads more than one page of runs."""
    from sqlalchemy import event

    from flyte_lab.dashboard.runs_page import ALL, PAGE_SIZE, RunsPage
    from flyte_lab.store import RunStore

    graph = {"tasks": [], "edges": [], "workflow_inputs": {}, "diagnostics": []}
    with RunStore.from_env() as store:
        made = [store.create_run(f"/nb/{'a' if i % 4 == 1 else 'b'}/pipe.ipynb" if i % 2 else "/nb/c.ipynb", {}, graph,
                                 [], "local", run_id=f"20260101-000000-{i:06x}") for i in range(2 * PAGE_SIZE + 10)]
        limits: list[Any] = []

        def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
            if "FROM runs" in statement and "ORDER BY runs.created_at DESC" in statement:  # a list of runs
                limits.append(parameters[-2] if " LIMIT " in statement else None)

        event.listen(store._engine, "before_cursor_execute", seen)
        page = RunsPage(store)
        assert list(page.table.value["run"]) == made[::-1][:PAGE_SIZE]
        page.page.value = 3
        assert list(page.table.value["run"]) == made[::-1][2 * PAGE_SIZE:]
        assert "60 runs · page 3 of 3" in page.count.object and page.next.disabled
        # same-named notebooks in two folders are told apart; the filter is a stored path
        assert set(page.notebook.options) == {ALL, "/nb/a/pipe.ipynb", "/nb/b/pipe.ipynb", "c.ipynb"}
        page.notebook.value = "/nb/b/pipe.ipynb"
        assert page.page.value == 1 and "15 runs · page 1 of 1" in page.count.object
        assert len(page.table.value) == 15
        event.remove(store._engine, "before_cursor_execute", seen)
        assert limits and all(limit is not None and limit <= PAGE_SIZE for limit in limits), limits


def test_a_big_runs_task_picker_completes_names_instead_of_listing_them() -> None:
    import panel as pn

    from flyte_lab.dashboard.task_detail import PICKER_LIST_MAX, task_picker

    small = task_picker(["make", "total"], "total")
    assert isinstance(small, pn.widgets.Select) and small.value == "total"
    names = [f"t{i}" for i in range(PICKER_LIST_MAX + 1)]
    big = task_picker(names, "t7")
    assert isinstance(big, pn.widgets.AutocompleteInput) and big.value == "t7" and big.options == names


def _message(page: Any) -> str:
    return " ".join(str(getattr(o, "object", "")) for o in page.objects)


def test_empty_store_and_bad_ids_are_clear_pages(home: Path) -> None:
    from flyte_lab.dashboard.run_page import run_page

    problem = open_store()
    assert isinstance(problem, StoreProblem) and problem.kind == "empty"
    assert "flyte-message-bad-id" in _message(run_page("../../etc/passwd"))
    assert "Open a run from the runs list" in _message(run_page(""))
    assert not home.exists()  # reading created nothing


def test_newer_store_schema_is_a_clear_message(home: Path) -> None:
    from flyte_lab.dashboard.run_page import run_page
    from flyte_lab.dashboard.runs_page import runs_page
    from flyte_lab.store import RunStore

    RunStore.from_env().close()
    with sqlite3.connect(home / "store.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    problem = open_store()
    assert isinstance(problem, StoreProblem) and problem.kind == "newer"
    assert "newer version of flyte_lab" in problem.message
    assert "flyte-message-newer" in _message(runs_page())
    assert "flyte-message-newer" in _message(run_page("20260101-000000-abcdef"))


def test_dashboard_port_0_prints_the_port_it_listens_on(home: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "dashboard.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([*CLI, "dashboard", "--port", "0"], env=cli_env(home), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        found = wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", log_path.read_text())
                         or proc.poll() is not None, 60, "the dashboard to print its URL")
        assert proc.poll() is None, log_path.read_text()
        url = found.group(0)
        assert int(found.group(1)) > 0, url
        with urllib.request.urlopen(url, timeout=30) as answer:  # printed once listening: no wait needed
            page = answer.read().decode()
        assert answer.status == 200 and "flyte_lab runs" in page
    finally:
        killpg(proc)
        log.close()


def test_dashboard_on_a_port_in_use_is_one_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*CLI, "dashboard", "--port", str(port)], env=cli_env(home), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"flyte-lab: error: the dashboard cannot listen on 127.0.0.1:{port} (Address already in use)"]


def test_dashboard_command_serves_the_runs_page(home: Path, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen([*CLI, "dashboard", "--port", str(port)], env=cli_env(home), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: accepts(port) or proc.poll() is not None, 60, "the dashboard to listen")
        assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            assert answer.status == 200 and "flyte_lab runs" in answer.read().decode()
    finally:
        killpg(proc)
        log.close()
    assert f"http://127.0.0.1:{port}/" in (tmp_path / "dashboard.log").read_text()


def test_dashboard_command_refuses_bad_oauth_params_in_one_line(home: Path) -> None:
    done = subprocess.run([*CLI, "dashboard", "--oauth-extra-params", "{nope"], env=cli_env(home),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("flyte-lab: error: --oauth-extra-params is not JSON")


def test_runs_page_lists_the_schedules_around_one_whose_row_cannot_be_read(home: Path, tmp_path: Path) -> None:
    from flyte_lab.dashboard.runs_page import RunsPage
    from flyte_lab.scheduler.spec import ScheduleSpec
    from flyte_lab.store import RunStore
    from tests.test_sched_cli import REPORT, spoil, spoiled_rows, write_notebook

    notebook = write_notebook(tmp_path / "daily.ipynb", REPORT)
    bad = spoiled_rows()
    with RunStore.from_env() as store:
        for name in ["good", *bad]:
            store.add_schedule(ScheduleSpec.parse({"path": str(notebook), "every": "1h", "name": name}).row())
        for name, (assignment, _) in bad.items():
            spoil(home, name, assignment)
        html = RunsPage(store)._schedules_html()
    rows = dict(re.findall(r"<tr><td>([a-z]+)</td>.*?</td><td>(.*?)</td>", html))
    # its next fire time, in the schedule's zone as `schedule list` says it
    assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}, \d\d:\d\d(:\d\d)? UTC", rows.pop("good"))
    assert {name: why in rows[name] and rows[name].startswith("invalid: ") for name, (_, why) in bad.items()} == \
        dict.fromkeys(bad, True)


def test_the_runs_page_reads_the_same_few_statements_however_many_runs_it_shows(home: Path) -> None:
    """One store query feeds a page of runs with their task counts: no read per row (it was one `get_run` and one
    graph per row, 50 statements more for a full page)."""
    from sqlalchemy import event

    from flyte_lab.dashboard.runs_page import PAGE_SIZE, RunsPage
    from flyte_lab.store import RunStore

    graph = {"tasks": [{"name": "a"}, {"name": "b"}], "edges": [], "workflow_inputs": {}, "diagnostics": []}
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    with RunStore.from_env() as store:
        def add_runs(count: int) -> None:
            for _ in range(count):
                run_id = store.create_run("/nb/pipe.ipynb", {}, graph, [{"name": "a"}, {"name": "b"}], "local")
                store.set_task_status(run_id, "a", "succeeded")
                store.set_task_status(run_id, "b", "failed", error={"type": "ValueError", "message": "m"})

        def statements_of_one_refresh(page: RunsPage) -> int:
            statements.clear()
            event.listen(store._engine, "before_cursor_execute", seen)
            page.show()
            event.remove(store._engine, "before_cursor_execute", seen)
            return len(statements)

        add_runs(2)
        page = RunsPage(store)
        few = statements_of_one_refresh(page)
        assert list(page.table.value["tasks done"]) == ["1/2"] * 2
        add_runs(PAGE_SIZE)
        assert statements_of_one_refresh(page) == few, statements
        assert len(page.table.value) == PAGE_SIZE
        assert list(page.table.value["tasks failed"]) == [1] * PAGE_SIZE


def _run_page_parts(state: Any) -> tuple[Any, Any, Any, Any]:
    from flyte_lab.dashboard.run_graph import RunGraph
    from flyte_lab.dashboard.task_detail import TaskDetail
    from flyte_lab.dashboard.task_table import TaskTable
    from flyte_lab.dashboard.timeline import Timeline

    return RunGraph(state), Timeline(state), TaskTable(state), TaskDetail(state)


def _redraws(graph: Any, timeline: Any, table: Any, detail: Any) -> list[str]:
    """A list that names each part's piece as it is redrawn (a bokeh source's data, a Panel object's value)."""
    seen: list[str] = []
    for name, source in (("graph", graph.nodes), ("inputs", graph.inputs), ("timeline", timeline.source)):
        source.on_change("data", lambda _attr, _old, _new, name=name: seen.append(name))
    for name, obj, what in (("table", table.table, "value"), ("summary", detail.summary, "object"),
                            ("notebook", detail.notebook, "object"), ("attempts", detail.attempt, "options"),
                            ("picker", detail.picker, "value")):
        obj.param.watch(lambda _event, name=name: seen.append(name), what)
    return seen


def test_one_assignment_to_the_run_state_updates_graph_timeline_table_and_detail() -> None:
    import copy

    from flyte_lab.dashboard.run_state import RunState

    state = RunState(GRAPH, copy.deepcopy(RUN))
    graph, timeline, table, detail = _run_page_parts(state)
    assert state.task == "make"  # no task failed: the first one
    state.select("ratio")  # as a click on its box or row does
    names = list(graph.nodes.data["name"])
    assert list(graph.nodes.selected.indices) == [names.index("ratio")] and detail.picker.value == "ratio"
    assert "(running, cell 5)" in detail.summary.object
    assert list(detail.attempt.options) == ["attempt 2 (running)", "attempt 1 (failed)"]

    after = copy.deepcopy(RUN)
    after["status"] = "failed"
    after["tasks"]["ratio"].update(status="failed", duration_s=1.5)
    after["tasks"]["report"]["status"] = "skipped"
    after["attempts_detail"]["ratio"][0].update(status="failed", finished_at="2026-01-01T00:00:05+00:00")
    state.run = after

    statuses = dict(zip(graph.nodes.data["name"], graph.nodes.data["status"], strict=True))
    assert statuses == {"make": "succeeded", "total": "cached", "ratio": "failed", "report": "skipped"}
    bars = dict(zip(timeline.source.data["label"], timeline.source.data["end"], strict=True))
    assert bars["ratio #2"] == datetime(2026, 1, 1, 0, 0, 5)  # ended, no longer drawn to now
    assert dict(zip(table.table.value["task"], table.table.value["status"], strict=True)) == statuses
    assert "(failed, cell 5)" in detail.summary.object
    assert list(detail.attempt.options) == ["attempt 2 (failed)", "attempt 1 (failed)"]
    # the selection outlives the new record
    assert list(graph.nodes.selected.indices) == [names.index("ratio")] and detail.picker.value == "ratio"
    state.select("no-such-task")  # a name still being typed in the picker selects nothing
    assert state.task == "ratio"


def test_a_tick_that_reads_the_same_run_record_redraws_nothing(home: Path) -> None:
    from flyte_lab.dashboard.run_page import RunPage
    from flyte_lab.store import RunStore

    tasks = [{"name": t["name"], "cell": t["cell"]} for t in GRAPH["tasks"]]
    with RunStore.from_env() as store:
        run_id = store.create_run("/nb/pipe.ipynb", {}, GRAPH, tasks, "local")
        store.set_task_status(run_id, "make", "running")
        store.start_attempt(run_id, "make", None, {})  # a running attempt: its timeline bar is drawn to now
        page = RunPage(store, dict(store.get_run(run_id)), dict(store.get_graph(run_id)))
        seen = _redraws(page.graph, page.timeline, page.tasks, page.detail)
        page.tick()  # a queued run is live: the tick reads its whole record, which has not changed
        assert seen == []
        page.state.param.trigger("run")  # the parts' own redraw on a notified record is seen...
        assert {"timeline", "table"} <= set(seen), seen
        seen.clear()
        store.set_task_status(run_id, "make", "succeeded")
        page.tick()  # ...and a changed record is one
        assert {"graph", "timeline", "table"} <= set(seen), seen
        assert page.tasks.table.value["status"].iloc[0] == "succeeded"
        assert page.graph.nodes.data["status"][0] == "succeeded"


def test_the_timeline_ticks_are_clock_times_and_the_wheel_scrolls_the_page() -> None:
    """Issue 18 item 7: bokeh's default ticks mixed scales ("800ms", "0ms" over a context line "17:14:49"), and
    the wheel zoomed the graph and the timeline instead of scrolling the page."""
    import copy

    from flyte_lab.dashboard.run_state import RunState

    state = RunState(GRAPH, copy.deepcopy(RUN))
    graph, timeline, _table, _detail = _run_page_parts(state)
    formatter = timeline.figure.xaxis[0].formatter
    for scale in ("microseconds", "milliseconds", "seconds", "minsec", "minutes", "hourmin", "hours"):
        assert re.fullmatch(r"%H:%M(:%S(\.%3N)?)?", getattr(formatter, scale)), scale
    assert formatter.seconds == formatter.minsec == "%H:%M:%S"  # one format whatever the span of whole seconds
    assert formatter.context is None and not formatter.boundary_scaling  # no second line, no mixed formats
    for figure in (graph.figure, timeline.figure):
        assert figure.toolbar.active_scroll is None
        assert any(type(tool).__name__ == "WheelZoomTool" for tool in figure.toolbar.tools)  # the user's choice


def test_a_requested_cancel_says_so_until_a_tick_sees_the_run_cancelled(home: Path) -> None:
    """Issue 18 item 9: the notice said "cancel … requested" for good, even once the run was cancelled."""
    from flyte_lab.dashboard.run_page import RunPage
    from flyte_lab.store import RunStore
    from flyte_lab.store.leases import driver_identity

    tasks = [{"name": t["name"], "cell": t["cell"]} for t in GRAPH["tasks"]]
    with RunStore.from_env() as store:
        run_id = store.create_run("/nb/pipe.ipynb", {}, GRAPH, tasks, "local")
        fence = store.claim_run(run_id, driver_identity(), 60)  # a live driver: the cancel is only requested
        store.set_run_status(run_id, "running", fence=fence)
        page = RunPage(store, dict(store.get_run(run_id)), dict(store.get_graph(run_id)))
        page._cancel(None)  # as the Cancel button does
        assert f"cancel of `{run_id}`: requested" in page.notice.object
        page.tick()
        assert "requested" in page.notice.object  # the driver has not acted yet
        store.set_run_status(run_id, "cancelled", fence=fence)  # as the driver does when it sees the request
        page.tick()
        assert f"run `{run_id}` cancelled" in page.notice.object and "requested" not in page.notice.object
        assert page.cancel.disabled


def _chain_notebook(path: Path, b_body: str = "y = x + 10") -> Path:
    """a -> b -> c."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("%%flyte_setup\nimport os"),
                             new_code_cell("%%flyte_task a() -> x: int\nx = 1"),
                             new_code_cell(f"%%flyte_task b(x: int) -> y: int\n{b_body}"),
                             new_code_cell("%%flyte_task c(y: int) -> z: int\nz = y * 2")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _relaunch_from(page: Any, task: str) -> Any:
    """Select `task` in the drill-down and press its "Relaunch from this task", as a user does; the action once it
    has recorded its run or ended."""
    page.state.select(task)
    assert not page.detail.relaunch_from.disabled
    page.detail.relaunch_from.clicks += 1
    action = page.action
    assert action is not None and action.from_task == task
    wait_for(lambda: action.new_run_id is not None or action.done.is_set(), 240, "the relaunch to record its run")
    return action


@pytest.mark.cluster
def test_relaunch_from_a_task_makes_a_partial_run_on_reused_upstream_tasks(home: Path, tmp_path: Path) -> None:
    """Issue 19: the drill-down's "Relaunch from this task" is `--from TASK` with the run's parameters: a new run
    whose unselected upstream tasks are `reused`, shown as reused with a link to the run that computed them; a
    refusal is its one line in the page's notice."""
    from panel.io.location import Location

    from flyte_lab.dashboard import actions
    from flyte_lab.dashboard.run_page import RunPage
    from flyte_lab.store import RunStore

    nb = _chain_notebook(tmp_path / "chain.ipynb")
    done = subprocess.run([*CLI, "run", "--cluster", "local", str(nb)], env=cli_env(home), capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    with RunStore.from_env() as store:
        (first,) = [r["run_id"] for r in store.list_runs()]
        page = RunPage(store, dict(store.get_run(first)), dict(store.get_graph(first)))
        page.location = Location()  # the browser's location, as a served page has it
        action = _relaunch_from(page, "c")
        assert f"relaunch from `c` of `{first}` started" in page.notice.object
        page.tick()  # the page goes to the new run as soon as it is recorded
        new = action.new_run_id
        assert new is not None and page.location.search == f"?id={new}" and page.location.reload
        assert actions.wait_all(timeout=240) and action.returncode == 0, action.describe()
        run = dict(store.get_run(new))
        assert {t: s["status"] for t, s in run["tasks"].items()} == {"a": "reused", "b": "reused", "c": "succeeded"}
        assert run["partial"]["select"] == {"only": [], "from": "c", "to": None}
        assert run["params"] == dict(store.get_run(first)["params"])
        assert run["tasks"]["b"]["reused_from"] == {"run_id": first, "attempt": 1, "changed": False}

        relaunched = RunPage(store, run, dict(store.get_graph(new)))  # the new run's page shows them as reused
        relaunched.state.select("b")
        assert (f'reused from run <a class="flyte-reused-link" href="./run?id={first}">{first}</a> (attempt 1)'
                in relaunched.detail.summary.object)
        assert f"its executed notebook is on the page of run {first}" in relaunched.detail.notebook.object
        colours = dict(zip(relaunched.graph.nodes.data["name"], relaunched.graph.nodes.data["color"], strict=True))
        assert colours["b"] == table_rows.STATUS_COLORS["reused"] != colours["c"]
        assert list(relaunched.tasks.table.value["status"]) == ["reused", "reused", "succeeded"]

        _chain_notebook(nb, b_body="y = x + 20")  # b edited: no earlier run can give c a valid y
        page = RunPage(store, dict(store.get_run(first)), dict(store.get_graph(first)))
        page.location = Location()
        action = _relaunch_from(page, "c")
        assert actions.wait_all(timeout=240) and action.new_run_id is None and action.returncode == 2
        page.tick()
        assert page.notice.object == (
            f'<p class="flyte-notice">relaunch from `c` of `{first}` refused: --from c: cannot take the outputs of '
            f"task `b` from an earlier run: its code, setup cells or inputs changed since run {first}; include it "
            "with --from b or name a run with --reuse RUN_ID</p>")
        assert page.location.search == "" and not page.detail.relaunch_from.disabled
        assert len(store.list_runs()) == 2  # nothing stored


def test_an_ended_tasks_output_shows_its_newest_lines_however_many_pages_they_take(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 20: the first read of an ended task with more lines than one page (READ_LIMIT) showed that
    page's tail, not the task's last lines, and never read again."""
    from flyte_lab.dashboard import task_output as shown
    from flyte_lab.dashboard.run_state import RunState
    from flyte_lab.store import RunStore
    from flyte_lab.store.task_output import OutputChunk

    monkeypatch.setattr(shown, "READ_LIMIT", 4)
    monkeypatch.setattr(shown, "SHOWN_LINES", 3)
    tasks = [{"name": t["name"], "cell": t["cell"]} for t in GRAPH["tasks"]]
    name = tasks[0]["name"]
    with RunStore.from_env() as store:
        run_id = store.create_run("/nb/pipe.ipynb", {}, GRAPH, tasks, "local")
        store.append_output(run_id, [OutputChunk(name, 1, None, 1, [("stdout", f"l{i}") for i in range(1, 11)],
                                                 1.0)])
        run = dict(store.get_run(run_id))
        run["tasks"] = {name: {"status": "succeeded"}}
        state = RunState(dict(store.get_graph(run_id)), run)
        state.select(name)
        view = shown.TaskOutput(state, _PagedStore(store, 4))
        assert "l8\nl9\nl10</pre>" in view.pane.object, view.pane.object


class _PagedStore:
    """The store, read a page of `limit` lines at a time as the dashboard's READ_LIMIT says."""

    def __init__(self, store: Any, limit: int) -> None:
        self.store, self.limit = store, limit

    def task_output(self, run_id: str, task: str | None = None, since: int = 0) -> dict[str, Any]:
        return self.store.task_output(run_id, task, since=since, limit=self.limit)  # type: ignore[no-any-return]
