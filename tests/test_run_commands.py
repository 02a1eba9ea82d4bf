"""`flyte-lab runs / show / outputs` against a real run store filled through its public API."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.cli import report
from flyte_lab.cli.main import main
from flyte_lab.presentation import formats
from flyte_lab.store import RunStore
from tests.conftest import CLI, cli_env

TASKS = [
    {"name": "make_data", "cell": 4, "resources": {}},
    {"name": "fit", "cell": 7, "resources": {"cpu": 2, "mem": "4Gi"}},
    {"name": "report", "cell": 9, "resources": {}},
]
GRAPH = {"tasks": [{"name": t["name"], "cell": t["cell"]} for t in TASKS], "edges": [["make_data", "fit", "raw"]]}
TRACEBACK = 'Traceback (most recent call last):\n  Cell 7, line 3\n    raise ValueError("bad lr")\nValueError: bad lr'
ERROR = {"type": "ValueError", "message": "bad lr", "cell": 7, "line": 3, "traceback": TRACEBACK}
RUNS_KEYS = {"run_id", "notebook", "status", "schedule", "scheduled_time", "created_at", "finished_at", "cancelled_by",
             "idle_s"}
SHOW_KEYS = {"run_id", "notebook", "status", "params", "created_at", "started_at", "finished_at", "tasks"}
TASK_KEYS = {"status", "attempts", "cell", "duration_s", "resources", "output_notebook", "outputs", "error", "usage",
             "reused_from"}


@pytest.fixture
def store(home: Path):
    s = RunStore.from_env()
    yield s
    s.close()


def _failed_run(store: RunStore, tmp_path: Path) -> str:
    """make_data succeeds with a JSON-able and a preview-only output, fit fails at cell 7 line 3, report skipped."""
    rid = store.create_run("pipeline.ipynb", {"n": 400, "seed": 11}, GRAPH, TASKS, "local", notebook_hash="h")
    store.set_run_status(rid, "running")
    store.set_task_status(rid, "make_data", "running")
    number = store.start_attempt(rid, "make_data", "worker-1", {})
    store.finish_attempt(rid, "make_data", number, "succeeded", output_notebook=str(tmp_path / "make_data.ipynb"))
    store.save_outputs(rid, "make_data", {
        "raw": {"type": "pd.DataFrame", "uri": "file:///a/raw", "codec": "parquet", "preview": "DataFrame 400 x 1"},
        "n_rows": {"type": "int", "uri": "file:///a/n", "codec": "json", "preview": "400", "value": 400},
        "names": {"type": "list[str]", "uri": "file:///a/m", "codec": "json", "preview": "['x']", "value": ["x"]},
    })
    store.set_task_status(rid, "make_data", "succeeded")
    store.set_task_status(rid, "fit", "running")
    for attempt in (1, 2):
        number = store.start_attempt(rid, "fit", "worker-1", {"cpu": 2, "mem": "4Gi"})
        assert number == attempt
        store.finish_attempt(rid, "fit", number, "failed", kind="user", error=ERROR,
                             output_notebook=str(tmp_path / f"fit-{number}.ipynb"))
    store.set_task_status(rid, "fit", "failed", error=ERROR)
    store.set_task_status(rid, "report", "skipped")
    store.set_run_status(rid, "failed")
    return rid


def _ok_run(store: RunStore, **kw: Any) -> str:
    rid = store.create_run("other.ipynb", {}, GRAPH, TASKS[:1], "local", notebook_hash="h", **kw)
    store.set_run_status(rid, "running")
    store.set_task_status(rid, "make_data", "running")
    store.set_task_status(rid, "make_data", "cached")
    store.set_run_status(rid, "succeeded")
    return rid


def _json_out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)


# -- runs -----------------------------------------------------------------------


def test_runs_json_is_the_contract_array_newest_first(store, tmp_path, capsys):
    first = _failed_run(store, tmp_path)
    fire = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
    second = _ok_run(store, schedule="nightly", scheduled_time=fire)

    rows = _json_out(capsys, ["runs", "--json"])

    assert [r["run_id"] for r in rows] == [second, first]
    assert all(set(r) == RUNS_KEYS for r in rows)
    assert rows[0]["schedule"] == "nightly"
    assert datetime.fromisoformat(rows[0]["scheduled_time"]) == fire
    assert rows[1] == {
        "run_id": first,
        "notebook": "pipeline.ipynb",
        "status": "failed",
        "schedule": None,
        "scheduled_time": None,
        "created_at": rows[1]["created_at"],
        "finished_at": rows[1]["finished_at"],
        "cancelled_by": None,
        "idle_s": None,
    }
    assert datetime.fromisoformat(rows[1]["finished_at"]) >= datetime.fromisoformat(rows[1]["created_at"])
    assert rows == store.list_runs()


def test_runs_limit_and_empty_store(store, tmp_path, capsys):
    assert _json_out(capsys, ["runs", "--json"]) == []
    _failed_run(store, tmp_path)
    newest = _ok_run(store)
    assert [r["run_id"] for r in _json_out(capsys, ["runs", "--json", "--limit", "1"])] == [newest]


def test_runs_text_has_one_row_per_run_without_colour_codes(store, tmp_path, capsys):
    failed = _failed_run(store, tmp_path)
    ok = _ok_run(store)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # captured stdout is not a terminal: plain text
    lines = out.splitlines()
    assert lines[0].split() == ["run", "id", "status", "notebook", "created", "(UTC)", "duration"]
    row_ok = next(line for line in lines if line.startswith(ok))
    row_failed = next(line for line in lines if line.startswith(failed))
    assert lines.index(row_ok) < lines.index(row_failed)
    assert row_ok.split()[1:3] == ["succeeded", "other.ipynb"]
    assert row_failed.split()[1:3] == ["failed", "pipeline.ipynb"]
    assert row_failed.split()[-1].endswith("s")  # a duration, not "-": the run finished


def test_runs_text_on_empty_store_says_how_to_start(store, capsys):
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.strip() == "no runs yet; `flyte-lab run NOTEBOOK` starts one"


def test_runs_refuses_non_positive_limit(store, capsys):
    assert main(["runs", "--limit", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "flyte-lab: error: --limit must be at least 1, got 0\n"


# -- show -----------------------------------------------------------------------


def test_show_json_is_the_store_run_object(store, tmp_path, capsys):
    rid = _failed_run(store, tmp_path)
    shown = _json_out(capsys, ["show", rid, "--json"])

    assert shown == store.get_run(rid)
    assert SHOW_KEYS <= set(shown)
    assert (shown["run_id"], shown["notebook"], shown["status"]) == (rid, "pipeline.ipynb", "failed")
    assert shown["params"] == {"n": 400, "seed": 11}
    assert list(shown["tasks"]) == ["make_data", "fit", "report"]
    assert all(set(t) == TASK_KEYS for t in shown["tasks"].values())
    fit = shown["tasks"]["fit"]
    assert fit["status"] == "failed"
    assert fit["attempts"] == 2
    assert fit["cell"] == 7
    assert fit["resources"] == {"cpu": 2, "mem": "4Gi"}
    assert fit["error"] == ERROR
    assert fit["output_notebook"] == str(tmp_path / "fit-2.ipynb")
    assert shown["tasks"]["make_data"]["outputs"]["n_rows"] == {"type": "int", "uri": "file:///a/n", "preview": "400"}
    assert shown["tasks"]["report"]["status"] == "skipped"


def test_show_accepts_a_unique_id_prefix(store, tmp_path, capsys):
    rid = _failed_run(store, tmp_path)
    assert _json_out(capsys, ["show", rid[:-2], "--json"])["run_id"] == rid


def test_show_text_has_header_task_table_and_the_error_with_traceback(store, tmp_path, capsys):
    rid = _failed_run(store, tmp_path)
    assert main(["show", rid]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0].split() == ["run", rid]
    assert lines[1].split() == ["notebook", "pipeline.ipynb"]
    assert lines[2].split() == ["status", "failed"]
    assert lines[3].split() == ["params", "n=400", "seed=11"]
    assert any(line.startswith("created ") for line in lines)
    assert any(line.startswith("finished ") for line in lines)

    header = next(line for line in lines if line.startswith("task ") and "attempts" in line)
    assert header.split() == ["task", "cell", "status", "attempts", "duration", "cached", "resources", "used"]
    fit = next(line for line in lines if line.startswith("fit "))
    assert fit.split()[:4] == ["fit", "7", "failed", "2"]
    assert fit.split()[-4:] == ["no", "cpu=2", "mem=4Gi", "-"]  # used: not measured (no worker ran it)
    report_row = next(line for line in lines if line.startswith("report "))
    assert report_row.split() == ["report", "9", "skipped", "0", "-", "no", "-", "-"]

    at = lines.index("task `fit` failed at cell 7, line 3: ValueError: bad lr")
    assert lines[at + 1 : at + 5] == TRACEBACK.splitlines()
    assert lines[at + 5] == f"executed notebook: {tmp_path / 'fit-2.ipynb'}"
    assert sum("failed at cell" in line for line in lines) == 1  # only the failed task


def test_show_text_marks_cached_tasks(store, capsys):
    rid = _ok_run(store)
    assert main(["show", rid]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("make_data "))
    assert row.split()[:3] == ["make_data", "4", "cached"]
    assert "yes" in row.split()


@pytest.mark.parametrize("command", ["show", "outputs"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_unknown_run_id_is_one_line_and_exit_2(store, capsys, command, json_flag):
    assert main([command, "nope", *json_flag]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("flyte-lab: error: no run `nope` in the store")


def test_unknown_run_id_in_a_subprocess_has_no_traceback(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([*CLI, "show", "nope"], capture_output=True, text=True, env=cli_env(home), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("flyte-lab: error: no run `nope`")
    assert "flyte-lab run NOTEBOOK" in proc.stderr  # says what to do
    assert not home.exists()  # a read-only command creates no store


# -- outputs --------------------------------------------------------------------


def test_outputs_json_gives_json_values_else_previews(store, tmp_path, capsys):
    rid = _failed_run(store, tmp_path)
    assert _json_out(capsys, ["outputs", rid, "--json"]) == {
        "make_data": {"n_rows": 400, "names": ["x"], "raw": "DataFrame 400 x 1"},
        "fit": {},
        "report": {},
    }


def test_outputs_text_is_a_task_output_type_preview_table(store, tmp_path, capsys):
    rid = _failed_run(store, tmp_path)
    assert main(["outputs", rid]) == 0
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0].split() == ["task", "output", "type", "preview"]
    rows = [line.split(None, 3) for line in lines[2:]]
    assert rows == [
        ["make_data", "n_rows", "int", "400"],
        ["make_data", "names", "list[str]", "['x']"],
        ["make_data", "raw", "pd.DataFrame", "DataFrame 400 x 1"],
    ]


def test_outputs_text_without_outputs_says_so(store, capsys):
    rid = _ok_run(store)
    assert main(["outputs", rid]) == 0
    assert capsys.readouterr().out.strip() == f"run {rid} has no outputs recorded (status: succeeded)"


# -- report and formats (pure renderers) --------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4213, "0.42s"), (12.34, "12.3s"), (245, "4m05s"), (7380, "2h03m")],
)
def test_format_duration(seconds, text):
    assert formats.format_duration(seconds) == text


def test_task_error_line_leaves_out_what_is_unknown():
    assert formats.task_error_line("fit", {"cell": 7, "error": ERROR}) == (
        "task `fit` failed at cell 7, line 3: ValueError: bad lr"
    )
    assert formats.task_error_line("fit", {"cell": 7, "error": {"type": "WorkerLost"}}) == (
        "task `fit` failed at cell 7: WorkerLost"
    )
    assert formats.task_error_line("fit", {"cell": None, "error": None}) == "task `fit` failed: no error recorded"


def test_run_duration_of_a_live_run_counts_to_now():
    run = {"created_at": "2025-01-01T12:00:00+00:00", "started_at": "2025-01-01T12:00:05+00:00", "finished_at": None}
    assert formats.run_duration(run) is None
    assert formats.run_duration(run, now=datetime(2025, 1, 1, 12, 1, 5, tzinfo=UTC)) == 60.0


def test_render_text_is_plain_and_does_not_read_markup(store, tmp_path):
    run = store.get_run(_failed_run(store, tmp_path))
    run["tasks"]["fit"]["error"] = {**ERROR, "message": "[bold]not markup[/bold]"}
    text = report.render_text(report.run_report(run), width=100)
    assert "\x1b[" not in text
    assert "ValueError: [bold]not markup[/bold]" in text
