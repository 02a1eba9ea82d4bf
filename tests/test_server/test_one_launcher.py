"""One way to launch a run in its own process (`flyte_lab.run_launch`), used by the Jupyter server, the
dashboard and the scheduler: real runs through it, and the same one-line refusal in all three.

The server's real runs are in `test_api.py` and `test_warm_launch.py`, the scheduler's in `test_sched_runs.py`;
here the dashboard's, and a launch that fails validation, refused with the same message by each launcher.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.dashboard import actions
from flyte_lab.graph.validate import graph_json, validate_notebook
from flyte_lab.run_launch import command
from flyte_lab.scheduler.loop import Scheduler
from flyte_lab.statuses import RunStatus
from flyte_lab.store import RunStore
from tests.conftest import NOTEBOOKS
from tests.process_helpers import wait_no_home_processes


def as_json(response: Any) -> Any:
    return json.loads(response.body)


def record_failed_run(notebook: Path) -> str:
    """A failed run of `notebook` as a driver records it (its real graph and tasks), on a local cluster."""
    wf = validate_notebook(str(notebook))
    with RunStore.from_env() as store:
        run_id = store.create_run(str(notebook), {"n": 3}, graph_json(wf),
                                  [{"name": name, "cell": task.cell} for name, task in wf.tasks.items()], "local")
        store.set_run_status(run_id, RunStatus.FAILED)
    return run_id


def break_stats_cell(notebook: Path) -> None:
    """`stats` now takes a str where `make` gives a list: a type-mismatch whatever the parameters."""
    content = json.loads(notebook.read_text())
    cell = next(c for c in content["cells"] if "".join(c["source"]).startswith("%%flyte_task stats"))
    cell["source"] = "%%flyte_task stats(raw: str) -> (mean: float, count: int)\nmean = 1.0\ncount = 1"
    notebook.write_text(json.dumps(content))


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_the_dashboard_relaunches_a_real_run_through_the_one_launcher(home: Path, tmp_path: Path) -> None:
    notebook = tmp_path / "pipeline.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", notebook)
    first = record_failed_run(notebook)
    action = actions.start("relaunch", first)
    assert action.process.args == command()
    assert actions.wait_all(timeout=200), "the relaunch is still running"
    assert (action.returncode, action.message) == (0, ""), action.log.read_text()
    assert action.new_run_id not in (None, first)
    with RunStore.from_env(create=False) as store:
        run = store.get_run(str(action.new_run_id))
    assert (run["status"], run["params"], run["notebook"]) == (RunStatus.SUCCEEDED, {"n": 3}, str(notebook))
    assert action.describe() == f"relaunch of `{first}` finished: run `{action.new_run_id}` succeeded"
    wait_no_home_processes(home, 30)


@pytest.mark.timeout(240)
async def test_a_launch_that_fails_validation_is_the_same_line_in_all_three(
        root: Path, fetch: Any, launcher: Any, home: Path) -> None:
    notebook = root / "fixable.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", notebook)
    run_id = record_failed_run(notebook)
    schedule = {"path": "fixable.ipynb", "cron": "0 7 * * *", "name": "daily", "params": {"n": "3"},
                "start": "2026-01-01T00:00:00Z"}
    assert (await fetch("schedules", method="POST", body=schedule)).code == 201
    break_stats_cell(notebook)

    try:  # the Jupyter server: resume, refused in the launched process
        response = await fetch(f"runs/{run_id}/resume", method="POST", body={})
    finally:
        await launcher.wait_all()
    assert response.code == 400, response.body
    from_server = as_json(response)["message"]
    assert [d["code"] for d in as_json(response)["diagnostics"] if d["severity"] == "error"] == ["type-mismatch"]

    action = actions.start("resume", run_id)  # the dashboard's Resume
    assert actions.wait_all(timeout=120)
    assert action.returncode == 2

    with RunStore.from_env(create=False) as store:  # the scheduler, at a time the fire of 07:00 is due
        assert Scheduler(store).run_once(datetime(2026, 1, 1, 8, tzinfo=UTC)) == 1
        (fire,) = store.schedule_fires("daily")
    assert fire["state"] == "failed"

    assert from_server == action.message == fire["reason"]
    assert "type" in from_server and "stats" in from_server and "\n" not in from_server
    with RunStore.from_env(create=False) as store:
        assert store.get_run(run_id)["status"] == RunStatus.FAILED  # nothing was changed by any of them
        assert [r["run_id"] for r in store.list_runs()] == [run_id]
