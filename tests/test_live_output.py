"""Live output (issue 20): what a running task prints reaches the store within a second or two, and
`flyte-lab logs [--follow]`, the dashboard and the executed notebook (saved during the attempt) show it while the
task runs. The REST route is in `test_server/test_task_log.py`; `tcp://` workers sharing no disk with the driver
in `test_s3_artifacts.py`.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyte_lab.engine.worker import live_output
from flyte_lab.engine.worker.live_output import LiveOutput
from flyte_lab.store import RunStore
from flyte_lab.store import task_output as task_output_module
from flyte_lab.store.task_output import OutputChunk
from tests.conftest import CLI, cli_env
from tests.process_helpers import finish, only_run_id, spawn, wait_for, write_notebook

TICKS = 40  # a line every half second for twenty seconds


def ticker_notebook(path: Path, ticks: int = TICKS) -> Path:
    """`tick` prints `tick 0` … every half second (and one line on stderr); `after` prints once."""
    return write_notebook(
        path, f"n = {ticks}",
        "%%flyte_task tick(n: int) -> total: int\nimport sys, time\nfor i in range(n):\n"
        "    print(f'tick {i}', flush=True)\n    if i == 2:\n        print('halfway-ish', file=sys.stderr)\n"
        "    time.sleep(0.5)\ntotal = n",
        "%%flyte_task after(total: int) -> doubled: int\nprint('doubling', total)\ndoubled = total * 2",
    )


def _sent() -> tuple[list[dict[str, Any]], LiveOutput]:
    messages: list[dict[str, Any]] = []
    return messages, LiveOutput("k", messages.append, secrets=["hunter2-secret"])


def _lines(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s, t) for m in messages for s, t in m["lines"]]


def test_outputs_become_lines_per_stream_partial_lines_wait_and_progress_bars_show_their_last_state() -> None:
    messages, live = _sent()
    live.add({"output_type": "stream", "name": "stdout", "text": "a\nb"})
    live.add({"output_type": "stream", "name": "stderr", "text": "\r 10%\r 50%\r100%\n"})
    live.add({"output_type": "stream", "name": "stdout", "text": "c\n"})
    live.add({"output_type": "execute_result", "data": {"text/plain": "42", "text/html": "<b>42</b>"}})
    live.add({"output_type": "display_data", "data": {"image/png": "..."}})
    live.add({"output_type": "error", "traceback": ["\x1b[31mValueError\x1b[0m", "bad"]})
    live.add({"output_type": "stream", "name": "stdout", "text": "no newline yet"})
    live.flush()
    assert _lines(messages) == [("stdout", "a"), ("stderr", "100%"), ("stdout", "bc"), ("display", "42"),
                                ("display", "[image/png]"), ("error", "ValueError"), ("error", "bad")]
    live.flush(final=True)  # the attempt ended: its unfinished line is sent too
    assert _lines(messages)[-1] == ("stdout", "no newline yet")
    assert [m["first"] + i for m in messages for i in range(len(m["lines"]))] == list(range(1, 9))


def test_each_element_of_a_batch_has_its_own_lines_numbered_from_one() -> None:
    """A batch of map-over elements prints through one attempt: each element's lines say whose they are, its
    unfinished line is its own (sent when the next element begins), and each is numbered from 1."""
    messages, live = _sent()
    live.element(3)
    live.add({"output_type": "stream", "name": "stdout", "text": "three\nthree, no newline"})
    live.element(4)
    live.add({"output_type": "stream", "name": "stdout", "text": "four\n"})
    live.flush(final=True)
    said = [(m["element"], m["first"] + i, text) for m in messages for i, (_, text) in enumerate(m["lines"])]
    assert said == [(3, 1, "three"), (3, 2, "three, no newline"), (4, 1, "four")]


def test_a_tasks_own_secret_is_masked_and_a_burst_is_cut_to_the_newest_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    messages, live = _sent()
    live.add({"output_type": "stream", "name": "stdout", "text": "token=hunter2-secret ok\n"})
    live.flush()
    assert _lines(messages) == [("stdout", "token=*** ok")]
    monkeypatch.setattr(live_output, "MAX_LINES_PER_FLUSH", 10)
    live.add({"output_type": "stream", "name": "stdout", "text": "".join(f"{i}\n" for i in range(25))})
    live.flush()
    burst = messages[-1]
    assert [t for _, t in burst["lines"]] == [str(i) for i in range(15, 25)]
    assert burst["first"] == 2 + 15 and burst["skipped"] == 15  # numbered as printed: readers see the gap


@given(st.lists(st.text(alphabet="ab\r\n", max_size=12), max_size=12), st.sampled_from([live_output.MAX_LINE, 3]),
       st.sampled_from([(), ("abab",)]))
def test_lines_reassemble_whatever_the_chunks(chunks: list[str], max_line: int, secrets: tuple[str, ...]) -> None:
    """Each line as if printed at once: a CRLF's `\r` dropped, the text after its last `\r` (a progress bar's
    last state), secrets masked, cut at `max_line`; however the text was chunked, and what waits for its newline
    kept short."""
    messages: list[dict[str, Any]] = []
    live = LiveOutput("k", messages.append, secrets=secrets)
    with patch.object(live_output, "MAX_LINE", max_line):
        for chunk in chunks:
            live.add({"output_type": "stream", "name": "stdout", "text": chunk})
            assert all(len(p) <= max_line + 5 for p in live._partial.values())
            live.flush()
        live.flush(final=True)
    text = "".join(chunks)
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    expected = [_shown(line, secrets)[:max_line] for line in expected]
    assert [t for _, t in _lines(messages)] == expected
    numbers = [m["first"] + i for m in messages for i in range(len(m["lines"]))]
    assert numbers == list(range(1, len(expected) + 1))


def _shown(line: str, secrets: tuple[str, ...]) -> str:
    shown = line.removesuffix("\r").rsplit("\r", 1)[-1]
    for secret in secrets:
        shown = shown.replace(secret, "***")
    return shown


def test_crlf_lines_keep_their_text_and_nul_is_replaced() -> None:
    messages, live = _sent()
    live.add({"output_type": "stream", "name": "stdout", "text": "x\r\ny\r"})
    live.add({"output_type": "stream", "name": "stdout", "text": "\nnul\x00here\n 50%\r100%\r\n"})
    live.add({"output_type": "stream", "name": "stderr", "text": "last\x00\r"})
    live.flush(final=True)
    assert _lines(messages) == [("stdout", "x"), ("stdout", "y"), ("stdout", "nul\ufffdhere"), ("stdout", "100%"),
                                ("stderr", "last\ufffd")]


def test_a_progress_bar_or_a_long_line_without_newline_is_kept_bounded() -> None:
    messages, live = _sent()
    for i in range(20_000):  # tqdm redrawing its bar in one cell: the old buffer grew to every state drawn
        live.add({"output_type": "stream", "name": "stderr", "text": f"\r{i / 200:5.1f}%|{'#' * (i // 400)}"})
    assert len(live._partial["stderr"]) < 60
    for _ in range(50):
        live.add({"output_type": "stream", "name": "stdout", "text": "y" * 1000})
    assert len(live._partial["stdout"]) <= live_output.MAX_LINE + len("hunter2-secret")
    live.add({"output_type": "stream", "name": "stdout", "text": "and more\n"})
    live.flush(final=True)
    assert _lines(messages) == [("stdout", "y" * live_output.MAX_LINE), ("stderr", "100.0%|" + "#" * 49)]
    # a secret across the cut, after one that shortened the line: masked, no half of it shown
    messages.clear()
    live.add({"output_type": "stream", "name": "stdout",
              "text": "hunter2-secret" + "y" * (live_output.MAX_LINE - 5) + "hunter2"})
    live.add({"output_type": "stream", "name": "stdout", "text": "-secret tail\n"})
    live.flush()
    assert _lines(messages) == [("stdout", "***" + "y" * (live_output.MAX_LINE - 5) + "**")]


def test_the_store_keeps_the_newest_lines_of_each_attempt_and_pages_by_id(home: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_output_module, "KEEP_LINES", 5)
    with RunStore.from_env() as store:
        run_id = store.create_run("/nb/t.ipynb", {}, {"tasks": []}, [{"name": "fit", "cell": 1},
                                                                      {"name": "sq", "cell": 2}], "local")
        store.append_output(run_id, [OutputChunk("fit", 1, None, 1, [("stdout", f"l{i}") for i in range(1, 4)], 1.0),
                                     OutputChunk("sq", 1, 3, 1, [("stderr", "e1")], 1.0)])
        first = store.task_output(run_id)
        assert [(x["task"], x["element"], x["line"], x["text"]) for x in first["lines"]] == [
            ("fit", None, 1, "l1"), ("fit", None, 2, "l2"), ("fit", None, 3, "l3"), ("sq", 3, 1, "e1")]
        assert first["dropped"] == []
        store.append_output(run_id, [OutputChunk("fit", 1, None, 4, [("stdout", f"l{i}") for i in range(4, 9)], 2.0),
                                     OutputChunk("fit", 2, None, 1, [("stdout", "again")], 3.0)])
        later = store.task_output(run_id, "fit", since=first["next"])
        assert [x["text"] for x in later["lines"]] == ["l4", "l5", "l6", "l7", "l8", "again"]
        kept = store.task_output(run_id, "fit")
        assert [x["text"] for x in kept["lines"]] == ["l4", "l5", "l6", "l7", "l8", "again"]  # 5 of attempt 1
        assert kept["dropped"] == ["fit"]
        assert store.task_output(run_id, "fit", since=later["next"]) == {**later, "lines": [], "dropped": ["fit"]}


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_logs_follow_the_dashboard_and_the_executed_notebook_show_a_running_tasks_lines(home: Path,
                                                                                       tmp_path: Path) -> None:
    from flyte_lab.dashboard.run_page import RunPage

    notebook = ticker_notebook(tmp_path / "ticker.ipynb")
    env = cli_env(home)
    run = spawn([*CLI, "run", str(notebook), "--cluster", "local", "--json"], home, tmp_path / "run.log")
    try:
        run_id = wait_for(lambda: only_run_id(home), 60, "the run to be recorded")
        follow = subprocess.Popen([*CLI, "logs", run_id, "--follow"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(iter(follow.stdout.readline, "")))  # type: ignore[union-attr]
        reader.start()
        wait_for(lambda: len(seen) >= 3, 60, "three lines from `logs --follow`")
        with RunStore.from_env() as store:
            assert store.run_tasks(run_id)["tick"]["status"] == "running"  # read before the task ended
            assert seen[:3] == ["tick  | tick 0\n", "tick  | tick 1\n", "tick  | tick 2\n"]

            page = RunPage(store, dict(store.get_run(run_id)), dict(store.get_graph(run_id)))
            page.state.select("tick")
            wait_for(lambda: (page.tick(), page.output.pane.object.count("tick ") >= 5)[1], 30,
                     "the dashboard to show five lines")
            shown = page.output.pane.object
            assert "(live)" in shown and "tick 4" in shown and "halfway-ish" in shown
            assert store.run_tasks(run_id)["tick"]["status"] == "running"

            # the executed notebook is saved as the attempt goes: readable now, with the lines printed so far
            url = wait_for(lambda: store.get_run(run_id)["tasks"]["tick"]["output_notebook"], 30,
                           "the executed notebook's first save")
            saved = json.loads(Path(url).read_text())
            body = next(c for c in saved["cells"] if "tick(n" in "".join(c["source"]))
            assert "tick 0" in "".join("".join(o.get("text", [])) for o in body["outputs"])
            assert store.run_tasks(run_id)["tick"]["status"] == "running"
        code, log = finish(run, tmp_path / "run.log", 120)
        assert code == 0, log[-3000:]
        assert follow.wait(30) == 0  # it stops by itself once the run ended and its last lines were read
        reader.join(10)
        assert [line.split("| ", 1)[1].rstrip("\n") for line in seen] == [
            *[f"tick {i}" for i in range(3)], "halfway-ish", *[f"tick {i}" for i in range(3, TICKS)],
            "doubling 40"]
        assert seen[-1].startswith("after | ")
        one = subprocess.run([*CLI, "logs", run_id, "after"], env=env, capture_output=True, text=True, timeout=60)
        assert (one.returncode, one.stdout) == (0, "doubling 40\n")
        page.tick()
        assert "(live)" not in page.output.pane.object
    finally:
        if run.poll() is None:
            run.kill()


def test_logs_of_an_unknown_task_or_run_is_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    with RunStore.from_env() as store:
        run_id = store.create_run("/nb/t.ipynb", {}, {"tasks": []}, [{"name": "fit", "cell": 1}], "local")
    env = cli_env(home)
    for argv, says in (([run_id, "nope"], f"run {run_id} has no task `nope`; its tasks: fit"),
                       (["20990101-000000-abcdef"], "20990101-000000-abcdef")):
        done = subprocess.run([*CLI, "logs", *argv], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_failure_to_store_output_is_said_once_and_the_run_goes_on_but_a_lost_lease_stops_it(
        home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy import text

    from flyte_lab.engine.driver import RunDriver, _Attempt
    from flyte_lab.errors import LeaseLostError
    from flyte_lab.graph.validate import graph_json, validate_notebook
    from flyte_lab.store.leases import driver_identity

    wf = validate_notebook(str(ticker_notebook(tmp_path / "ticker.ipynb")))
    with RunStore.from_env() as store:
        run_id = store.create_run(str(tmp_path / "ticker.ipynb"), {}, graph_json(wf),
                                  [{"name": n, "cell": t.cell} for n, t in wf.tasks.items()], "local")
        fence = store.claim_run(run_id, driver_identity(), 60)
        driver = RunDriver(store=store, artifacts=None, wf=wf, run_id=run_id, client=None,  # type: ignore[arg-type]
                           fence=fence, input_refs={}, secrets={})
        driver.keys["k"] = (_Attempt(task="tick", attempt=1, futures=[]), 0)

        def printed(first: int) -> None:
            driver.output.put({"key": "k", "first": first, "lines": [["stdout", f"tick {first}"]], "time": 1.0})

        printed(1)
        driver._store_output()
        with store._write() as conn:  # the store now refuses every output line (a real database error)
            conn.execute(text("DROP TABLE task_output"))
        for first in (2, 3):
            printed(first)
            driver._store_output()  # no exception: the driver goes on driving the run
        said = [r.getMessage() for r in caplog.records if "live output not stored" in r.getMessage()]
        assert len(said) == 1 and "task_output" in said[0], said
        store.claim_run(run_id, driver_identity(), 60)  # another driver took the run: this one must stop
        printed(4)
        with pytest.raises(LeaseLostError):
            driver._store_output()
