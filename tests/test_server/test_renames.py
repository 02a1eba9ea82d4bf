"""Runs and schedules follow a notebook renamed or moved through Jupyter (its contents API, as Lab renames)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from flyte_lab.store import RunStore
from tests.conftest import NOTEBOOKS
from tests.test_server.test_run_summaries import add_runs


async def rename(jp_fetch: Any, old: str, new: str) -> None:
    response = await jp_fetch("api", "contents", *old.split("/"), method="PATCH", body=json.dumps({"path": new}))
    assert response.code == 200


async def runs_of(fetch: Any, path: str) -> list[str]:
    response = await fetch("runs", params={"path": path})
    assert response.code == 200, response.body
    return [run["run_id"] for run in json.loads(response.body)]


async def eventually(check: Any) -> Any:
    # the contents event's listener runs as a task of the server's loop, after the rename's answer
    for _ in range(100):
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    return await check()


async def test_a_notebook_renamed_in_jupyter_keeps_its_runs_and_schedules(root: Path, fetch: Any,
                                                                          jp_fetch: Any, home: Path) -> None:
    made = add_runs(root / "valid_pipeline.ipynb", 2)
    other = add_runs(root / "type_mismatch.ipynb", 1)
    assert sorted(await runs_of(fetch, "valid_pipeline.ipynb")) == sorted(made)
    added = await fetch("schedules", method="POST", body={"name": "nightly", "path": "valid_pipeline.ipynb",
                                                          "cron": "0 3 * * *"})
    assert added.code in (200, 201), added.body

    await rename(jp_fetch, "valid_pipeline.ipynb", "renamed pipeline.ipynb")

    assert sorted(await eventually(lambda: runs_of(fetch, "renamed pipeline.ipynb"))) == sorted(made)
    assert await runs_of(fetch, "valid_pipeline.ipynb") == []
    assert await runs_of(fetch, "type_mismatch.ipynb") == other  # another notebook's runs stay where they are
    schedules = json.loads((await fetch("schedules", params={"path": "renamed pipeline.ipynb"})).body)
    assert [s["name"] for s in schedules] == ["nightly"]
    with RunStore.from_env() as store:  # what `flyte-lab runs --notebook NEW` reads
        assert {r["run_id"] for r in store.list_runs(notebook=str(root / "renamed pipeline.ipynb"))} == set(made)


async def test_a_folder_moved_in_jupyter_moves_the_runs_of_the_notebooks_inside(root: Path, fetch: Any,
                                                                               jp_fetch: Any) -> None:
    (root / "w_1").mkdir()
    (root / "w_10").mkdir()
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", root / "w_1" / "a.ipynb")
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", root / "w_10" / "a.ipynb")
    inside = add_runs(root / "w_1" / "a.ipynb", 1)
    beside = add_runs(root / "w_10" / "a.ipynb", 1)  # shares the folder's name as a prefix: must not move

    await rename(jp_fetch, "w_1", "project")

    assert await eventually(lambda: runs_of(fetch, "project/a.ipynb")) == inside
    assert await runs_of(fetch, "w_10/a.ipynb") == beside
