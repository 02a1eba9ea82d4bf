"""`GET /flyte-lab/api/runs` serves run summaries (progress, task counts, the tasks' states) read in a fixed
number of statements from the server's one run store, however many runs there are: the sidebar makes one request
where it made one per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from flyte_lab.statuses import RunStatus, TaskStatus
from flyte_lab.store import RunStore
from flyte_lab.store.shared import shared_store

GRAPH = {"tasks": [{"name": "a", "cell": 2}, {"name": "b", "cell": 3}], "edges": [], "workflow_inputs": {}}
TASKS = [{"name": "a", "cell": 2}, {"name": "b", "cell": 3}]


def add_runs(notebook: Path, count: int) -> list[str]:
    made = []
    with RunStore.from_env() as store:
        for _ in range(count):
            run_id = store.create_run(str(notebook), {}, GRAPH, TASKS, "local", notebook_hash="h")
            store.set_run_status(run_id, RunStatus.FAILED)
            store.set_task_status(run_id, "a", TaskStatus.SUCCEEDED)
            store.set_task_status(run_id, "b", TaskStatus.FAILED, error={
                "type": "ValueError", "message": "bad", "cell": 3, "line": 2, "traceback": "long text"})
            made.append(run_id)
    return made


async def test_get_runs_reads_the_same_few_statements_however_many_runs(root: Path, fetch: Any) -> None:
    notebook = root / "valid_pipeline.ipynb"
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    async def statements_of_one_list() -> tuple[int, list[dict[str, Any]]]:
        statements.clear()
        event.listen(Engine, "before_cursor_execute", seen)  # every engine: a store opened per request counts too
        try:
            response = await fetch("runs")
        finally:
            event.remove(Engine, "before_cursor_execute", seen)
        assert response.code == 200, response.body
        return len(statements), json.loads(response.body)

    add_runs(notebook, 2)
    await fetch("runs")  # the server opens its store once, at its first request that finds one
    store = shared_store()
    few, listed = await statements_of_one_list()
    made = add_runs(notebook, 30)
    many, listed = await statements_of_one_list()
    assert many == few, statements
    assert not any("alembic_version" in s for s in statements)  # no store was opened for the request
    assert shared_store() is store

    assert [r["run_id"] for r in listed[:30]] == made[::-1]
    newest = listed[0]
    assert (newest["path"], newest["status"], newest["progress"]) == ("valid_pipeline.ipynb", "failed",
                                                                       {"done": 1, "total": 2})
    assert newest["task_counts"] == {"succeeded": 1, "failed": 1}
    assert newest["tasks"] == {
        "a": {"status": "succeeded", "cell": 2, "error": None},
        "b": {"status": "failed", "cell": 3, "error": {"type": "ValueError", "message": "bad", "cell": 3, "line": 2}}}
    assert "graph" not in newest
    # what a run's own route counts, the list counts the same
    one = json.loads((await fetch(f"runs/{newest['run_id']}")).body)
    assert one["progress"] == newest["progress"]
