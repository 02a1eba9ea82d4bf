"""A cancelled run, end to end with a real LocalCluster: the task it stopped is `cancelled` (not `failed`), its
attempt is closed `cancelled` with a finish time, the run records who cancelled, every reader says so without
pointing at a cell or a debugger, progress is the same count everywhere, and a resume reruns what was cancelled.

The running task waits for a marker file the test creates, so the test chooses when it may finish.
"""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.statuses import CancelSource
from tests.conftest import CLI, cli_env
from tests.process_helpers import wait_for, write_notebook

pytestmark = pytest.mark.cluster

WAIT = ("import os, time\n"
        "open(os.path.join(marks, f'started_{time.time_ns()}'), 'w').close()\n"
        "while not os.path.exists(os.path.join(marks, 'release')):\n"
        "    time.sleep(0.05)\n")


def _notebook(tmp_path: Path, marks: Path) -> Path:
    return write_notebook(
        tmp_path / "cancel_me.ipynb", f"marks = {str(marks)!r}",
        "%%flyte_task quick() -> q: int\nq = 1",
        "%%flyte_task slow(marks: str, q: int) -> x: int\n" + WAIT + "x = q + 1",
        "%%flyte_task after(x: int) -> y: int\ny = x + 1",
    )


@pytest.mark.timeout(300)
def test_a_run_cancelled_mid_task_ends_it_cancelled_says_who_and_resumes(home: Path, tmp_path: Path) -> None:
    from flyte_lab.cli.launch_commands import summary
    from flyte_lab.dashboard.table_rows import attempt_bars, run_row
    from flyte_lab.engine.api import cancel_run, resume_run, run_notebook
    from flyte_lab.kernel_ext.run_widget import RunWidget
    from flyte_lab.run_progress import progress
    from flyte_lab.store import RunStore

    marks = tmp_path / "marks"
    marks.mkdir()
    nb = _notebook(tmp_path, marks)
    created: list[str] = []
    ended: dict[str, Any] = {}

    def drive() -> None:
        try:
            ended["record"] = run_notebook(str(nb), {}, cluster="local", workers=1, on_created=created.append)
        except BaseException as exc:  # reported by the assertions below
            ended["error"] = exc

    runner = threading.Thread(target=drive)
    runner.start()
    try:
        wait_for(lambda: list(marks.glob("started_*")) or "error" in ended, 120, "`slow` to start")
        assert "error" not in ended, ended
        assert cancel_run(created[0], by=CancelSource.SIDEBAR) == (created[0], "requested")
    finally:
        runner.join(120)
    assert not runner.is_alive() and "error" not in ended, ended
    run = ended["record"]

    said = {"type": "Cancelled", "message": "cancelled from the JupyterLab sidebar"}
    assert (run["status"], run["cancelled_by"]) == ("cancelled", "sidebar")
    assert {n: t["status"] for n, t in run["tasks"].items()} == {
        "quick": "succeeded", "slow": "cancelled", "after": "skipped"}
    assert run["tasks"]["slow"]["error"] == said  # who cancelled; no cell, line or traceback to point at
    [attempt] = run["attempts_detail"]["slow"]
    assert (attempt["status"], attempt["kind"], attempt["error"]) == ("cancelled", None, said)
    assert attempt["finished_at"] and attempt["finished_at"] <= run["finished_at"]

    # the timeline's bar ends when the attempt did, however much later the page is drawn
    [bar] = [b for b in attempt_bars(run, now=datetime(2099, 1, 1, tzinfo=UTC)) if b["task"] == "slow"]
    assert bar["end"] == datetime.fromisoformat(attempt["finished_at"]).replace(tzinfo=None)

    # one progress for every surface: what finished successfully over all tasks (a cancelled task is none)
    assert progress(run["tasks"]) == (1, 3)
    with RunStore.from_env() as store:
        [row] = store.run_summaries()
    assert row["cancelled_by"] == "sidebar"
    assert run_row(row, datetime.now(UTC))["tasks done"] == "1/3"  # the dashboard's runs table
    widget = RunWidget("test")
    widget.show(run, {"tasks": [], "edges": []}, {})
    assert (widget.bar.value, widget.bar.max, widget.bar.description) == (1, 3, "1/3")
    assert "%flyte_debug" not in widget.failures.value  # nothing to debug in a cancel
    assert "cancelled from the JupyterLab sidebar" in widget.failures.value

    # the CLI: `run`'s closing summary and `show` say who cancelled, never "failed at infrastructure"
    text = summary(run)
    assert "cancelled from the JupyterLab sidebar" in text and "infrastructure" not in text
    assert "flyte-lab debug" not in text
    shown = subprocess.run([*CLI, "show", run["run_id"]], env=cli_env(home), capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "cancelled from the JupyterLab sidebar" in shown.stdout
    assert "failed" not in shown.stdout and "infrastructure" not in shown.stdout, shown.stdout

    # a resume reruns the cancelled task (and what it feeds), reusing what succeeded
    (marks / "release").touch()
    resumed = resume_run(run["run_id"], cluster="local", workers=1)
    assert resumed["status"] == "succeeded" and resumed["cancelled_by"] is None
    assert {n: t["status"] for n, t in resumed["tasks"].items()} == {
        "quick": "succeeded", "slow": "succeeded", "after": "succeeded"}
    assert [a["status"] for a in resumed["attempts_detail"]["slow"]] == ["cancelled", "succeeded"]
    assert len(resumed["attempts_detail"]["quick"]) == 1  # reused, not rerun
    assert resumed["tasks"]["after"]["outputs"]["y"]["preview"] == "3"


def test_debugging_a_cancelled_task_says_who_cancelled_it_not_where_it_failed() -> None:
    from flyte_lab.kernel_ext.triage import AttemptRecord

    said = {"type": "Cancelled", "message": "cancelled from the run widget"}
    record = AttemptRecord(run_id="r", task="slow", notebook="nb.ipynb", cell=3, status="cancelled", number=1,
                           attempts=1, error=said, executed="x.ipynb", inputs=[], map_index=None, body="", body_line=2)
    assert record.summary() == ("run r, task `slow` (cell 3), attempt 1 of 1: cancelled\n"
                                "cancelled from the run widget\nexecuted notebook: x.ipynb")
