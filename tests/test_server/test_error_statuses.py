"""Each error answers with the HTTP status its class declares (`http_status`), through a real Jupyter server.

One request per status a user can meet: 400 (refused input), 404 (nothing there: no store, no run, no
executed notebook), 409 (busy, or exists already); the status is the error's own, also for an error raised in
the launched run's process and sent back over its answer line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flyte_lab import errors
from flyte_lab.graph.validate import graph_json, validate_notebook
from flyte_lab.statuses import RunStatus, TaskStatus
from flyte_lab.store import RunStore
from flyte_lab.store.leases import driver_identity


def as_json(response: Any) -> Any:
    return json.loads(response.body)


def record_run(notebook: Path, status: str = RunStatus.FAILED) -> str:
    """A run of `notebook` as a driver records it (its real graph and tasks), ended with `status`."""
    wf = validate_notebook(str(notebook))
    with RunStore.from_env() as store:
        run_id = store.create_run(str(notebook), {"n": 3}, graph_json(wf),
                                  [{"name": name, "cell": task.cell} for name, task in wf.tasks.items()], "local")
        store.set_run_status(run_id, status)
    return run_id


def test_every_error_class_declares_a_status_in_its_range() -> None:
    """User errors (exit 2) are 4xx; the rest are failures of a run or of ours (500)."""
    def tree(cls: type[errors.FlyteLabError]) -> list[type[errors.FlyteLabError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in tree(sub))]

    for cls in tree(errors.FlyteLabError):
        if issubclass(cls, errors.UserInputError):
            assert 400 <= cls.http_status < 500, cls
    assert errors.RunNotFound.http_status == errors.NoStore.http_status == 404
    assert errors.ScheduleNotFound.http_status == errors.ExecutedNotebookNotFound.http_status == 404
    assert errors.RunBusy.http_status == errors.ScheduleExists.http_status == 409
    assert errors.ScheduledRunExists.http_status == 409
    assert errors.RunFailed.http_status == errors.DriverError.http_status == 500


def test_an_error_crosses_a_process_boundary_with_its_status() -> None:
    sent = errors.RunBusy("run `x` is still being driven", run_id="x")
    back = errors.from_wire(json.loads(json.dumps(errors.to_wire(sent))))
    assert (type(back), back.message, back.exit_code, back.http_status) == (errors.RunBusy, sent.message, 2, 409)
    diagnostics = [{"code": "type-mismatch"}]
    refused = errors.from_wire(errors.to_wire(errors.ValidationFailed("bad", diagnostics=diagnostics)))
    assert (refused.http_status, refused.data["diagnostics"]) == (400, diagnostics)
    # a class this side does not know keeps the status and exit code it was sent with
    unknown = errors.from_wire({"type": "SomethingNew", "message": "m", "exit_code": 2, "http_status": 409})
    assert (type(unknown), unknown.http_status, unknown.exit_code) == (errors.FlyteLabError, 409, 2)
    crash = errors.from_wire(errors.to_wire(RuntimeError("boom")))
    assert (crash.http_status, crash.exit_code, crash.message) == (500, 1, "RuntimeError: boom")


async def test_400_a_refused_request(root: Path, fetch: Any) -> None:
    for response in (await fetch("runs", method="POST", body="{not json"),
                     await fetch("runs", method="POST", body={"path": "type_mismatch.ipynb"}),
                     await fetch("schedules/preview", params={"cron": "61 * * * *"})):
        assert response.code == 400, response.body
        assert as_json(response)["message"]


async def test_404_without_a_store(root: Path, fetch: Any, home: Path) -> None:
    """No store yet (nothing was ever run): a run or schedule named in a URL is not found, never an error."""
    assert not (home / "store.db").exists()
    for response in (await fetch("runs/abc"), await fetch("runs/abc/tasks/make/notebook"),
                     await fetch("schedules/daily/pause", method="POST", body={})):
        assert response.code == 404, response.body
    assert not (home / "store.db").exists()  # reading created nothing


async def test_404_a_missing_executed_notebook(root: Path, fetch: Any) -> None:
    """No such task, no attempt yet, or the file gone since: each 404 with the reason, never 500."""
    run_id = record_run(root / "valid_pipeline.ipynb")
    gone = root / "gone" / "make.ipynb"
    with RunStore.from_env() as store:
        store.set_task_status(run_id, "make", TaskStatus.FAILED, output_notebook=str(gone))
    for task, reason in (("nosuch", "has no task `nosuch`"), ("stats", "has no executed notebook yet"),
                         ("make", "is gone")):
        response = await fetch(f"runs/{run_id}/tasks/{task}/notebook")
        assert response.code == 404, response.body
        assert reason in as_json(response)["message"]


async def test_409_exists_already(root: Path, fetch: Any) -> None:
    body = {"path": "valid_pipeline.ipynb", "cron": "0 7 * * *", "name": "daily"}
    assert (await fetch("schedules", method="POST", body=body)).code == 201
    again = await fetch("schedules", method="POST", body=body)
    assert again.code == 409, again.body
    assert "already exists" in as_json(again)["message"]


@pytest.mark.timeout(120)
async def test_409_busy_from_the_launched_process(root: Path, fetch: Any, launcher: Any) -> None:
    """Resume of a run another live driver holds: refused in the run's own process, answered with its status."""
    run_id = record_run(root / "valid_pipeline.ipynb")
    with RunStore.from_env() as store:
        store.claim_run(run_id, driver_identity(), 600)  # this test process is the live driver
    try:
        response = await fetch(f"runs/{run_id}/resume", method="POST", body={})
    finally:
        await launcher.wait_all()
    assert response.code == 409, response.body
    assert "is still being driven by pid" in as_json(response)["message"]
