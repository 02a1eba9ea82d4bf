"""A run's history told from its state machine alone: a real notebook whose task fails once and is retried,
driven by the real driver on a real LocalCluster (kernels, papermill, SQLite) through the public API
(`run_notebook(on_driven=...)` hands over the run's state machine), then read back as the task's
story (its stimuli with their ids, and the instructions each produced for it, in order) and checked
against what the store recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_lab.engine import api
from flyte_lab.engine import state_machine as sm
from flyte_lab.engine.attempt_records import AttemptFailed, AttemptSucceeded
from tests.test_engine_run import write_notebook

pytestmark = pytest.mark.cluster


def test_the_stimulus_log_tells_a_retried_tasks_story(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "tried"
    nb = write_notebook(
        tmp_path / "story.ipynb",
        "%%flyte_setup\nimport os",
        f"%%flyte_task flaky() -> n: int --retries 1\nif not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n    raise RuntimeError('first try fails')\nn = 1",
        "%%flyte_task after(n: int) -> m: int\nm = n + 1",
    )
    machines: list[sm.RunStateMachine] = []
    run = api.run_notebook(str(nb), {}, cluster="local", workers=1, on_driven=machines.append)
    assert run["status"] == "succeeded"
    [machine] = machines

    story = machine.story("flaky")
    ids = [entry.id for entry in story]
    assert ids == sorted(ids) and ids[0] == 1, ids
    assert [(type(e.event).__name__, [type(i).__name__ for i in e.instructions]) for e in story] == [
        ("RunStarted", ["StartAttempt", "Submit"]),
        ("TaskStarted", ["MarkTask"]),
        ("TaskFailed", ["FinishAttempt", "MarkTask", "Retrying", "StartAttempt", "Submit"]),
        ("TaskStarted", ["MarkTask"]),
        ("TaskSucceeded", ["FinishAttempt"]),
    ]
    first, started1, failed, started2, succeeded = story
    assert first.instructions == (sm.StartAttempt("flaky", 1), sm.Submit("flaky", 1))
    assert started1.event.attempt == 1 and started1.instructions == (
        sm.MarkTask("flaky", "running", at=started1.event.at),)
    assert isinstance(failed.event, sm.TaskFailed) and isinstance(failed.event.result, AttemptFailed)
    result = failed.event.result
    assert (failed.event.attempt, result.kind, result.error.type, result.error.message) == (
        1, "user", "RuntimeError", "first try fails")
    assert failed.instructions == (sm.FinishAttempt("flaky", 1, result), sm.MarkTask("flaky", "queued"),
                                   sm.Retrying("flaky", 1, 2, 2, result.error), sm.StartAttempt("flaky", 2),
                                   sm.Submit("flaky", 2))
    assert started2.event.attempt == 2
    assert isinstance(succeeded.event, sm.TaskSucceeded) and isinstance(succeeded.event.result, AttemptSucceeded)
    assert succeeded.instructions == (sm.FinishAttempt("flaky", 2, succeeded.event.result),)
    # the downstream task's story begins with the success that let it start
    assert [type(i).__name__ for i in machine.story("after")[0].instructions] == ["StartAttempt", "Submit"]
    assert machine.story("after")[0].id == succeeded.id

    # what the store recorded (the run's `show --json` record) is what the instructions carried, under the same
    # attempt numbers
    attempts = run["attempts_detail"]["flaky"]
    assert [(a["number"], a["status"]) for a in attempts] == [(1, "failed"), (2, "succeeded")]
    assert attempts[0]["error"] == result.error.to_dict() == {
        "type": "RuntimeError", "message": "first try fails", "cell": 2, "line": 4,
        "traceback": result.error.traceback}
    assert run["tasks"]["flaky"]["attempts"] == 2 and run["tasks"]["flaky"]["error"] is None
    assert run["tasks"]["flaky"]["output_notebook"] == succeeded.event.result.output_notebook


def test_a_failed_map_over_task_shows_the_failing_elements_notebook(tmp_path: Path, home: Path) -> None:
    """The task's executed notebook is the one its failed attempt recorded: the element that failed (what
    `flyte-lab debug` and the sidebar open), never an element that finished before it and succeeded."""
    from flyte_lab.engine.api import run_notebook

    nb = write_notebook(
        tmp_path / "map_fail.ipynb",
        "%%flyte_setup\nimport time",
        "%%flyte_task check(items: int) -> ok: int --map-over items\n"
        "if items == 2:\n    time.sleep(1.5)  # the others finish first\n    raise ValueError('element 2 is bad')\n"
        "ok = items",
        parameters="items = [1, 2, 3]",
    )
    record = run_notebook(str(nb), {}, cluster="local", workers=1)
    task = record["tasks"]["check"]
    assert (record["status"], task["status"], task["error"]["message"]) == ("failed", "failed", "element 2 is bad")
    assert "'map_index': 1" in Path(task["output_notebook"]).read_text()
