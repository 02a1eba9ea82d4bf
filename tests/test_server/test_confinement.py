"""Runs and schedules of notebooks outside the Jupyter root: not listed, not read, not acted on.

The routes that take a path refuse one outside the root with 404; the routes that name a stored run or
schedule give the same answer when its notebook lies outside (by real path, as it is now).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.store import RunStore
from tests.conftest import CLI, NOTEBOOKS, cli_env
from tests.process_helpers import write_notebook

GRAPH = {"tasks": [{"name": "a", "cell": 2}], "edges": []}
TASKS = [{"name": "a", "cell": 2, "resources": {}}]


def as_json(response: Any) -> Any:
    return json.loads(response.body)


def record_run(notebook: Path) -> str:
    """A queued run of `notebook` as the store records it (the path as given, as an older version or another
    tool may have stored it)."""
    with RunStore.from_env() as store:
        return store.create_run(str(notebook), {}, GRAPH, TASKS, "local", notebook_hash="h")


async def assert_hidden(fetch: Any, launcher: Any, run_id: str, task: str) -> None:
    """Every route on the run answers as for a run that does not exist, and nothing is started or changed."""
    with RunStore.from_env(create=False) as store:
        before = (store.get_run(run_id), store.run_record(run_id))
    assert run_id not in [r["run_id"] for r in as_json(await fetch("runs"))]
    try:
        responses = [await fetch(f"runs/{run_id}"),
                     await fetch(f"runs/{run_id}/tasks/{task}/notebook"),
                     await fetch(f"runs/{run_id}/cancel", method="POST", body={}),
                     await fetch(f"runs/{run_id}/resume", method="POST", body={}),
                     await fetch(f"runs/{run_id}/relaunch", method="POST", body={})]
        assert not launcher.children  # no process was started to resume or relaunch it
    finally:
        await launcher.wait_all()
    for response in responses:
        assert response.code == 404, response.body
        assert as_json(response) == {"message": f"no run `{run_id}` under the Jupyter root"}
    with RunStore.from_env(create=False) as store:
        # no new attempt, no cancel, no driver claim: the run and its own row are as they were
        assert (store.get_run(run_id), store.run_record(run_id)) == before


def swap_folder_for_link(root: Path, elsewhere: Path) -> None:
    """`root/sub` moves out of the root and a symlink to it takes its place."""
    shutil.move(root / "sub", elsewhere / "sub")
    (root / "sub").symlink_to(elsewhere / "sub", target_is_directory=True)


def replace_notebook_by_link(root: Path, elsewhere: Path) -> None:
    shutil.move(root / "sub" / "nb.ipynb", elsewhere / "nb.ipynb")
    (root / "sub" / "nb.ipynb").symlink_to(elsewhere / "nb.ipynb")


@pytest.mark.parametrize("leave_root", [swap_folder_for_link, replace_notebook_by_link])
async def test_a_run_whose_notebook_now_leads_out_of_the_root_is_hidden(
        root: Path, fetch: Any, launcher: Any, tmp_path: Path, leave_root: Callable[[Path, Path], None]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "sub").mkdir()
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", root / "sub" / "nb.ipynb")
    run_id = record_run(root / "sub" / "nb.ipynb")
    shown = await fetch(f"runs/{run_id}")
    assert (shown.code, as_json(shown)["path"]) == (200, "sub/nb.ipynb")
    assert [r["run_id"] for r in as_json(await fetch("runs"))] == [run_id]
    leave_root(root, elsewhere)  # the stored path is unchanged; its real path is now outside the root
    await assert_hidden(fetch, launcher, run_id, "a")


async def test_a_run_recorded_through_a_link_out_of_the_root_is_hidden(root: Path, fetch: Any, launcher: Any,
                                                                       tmp_path: Path) -> None:
    outside = tmp_path / "outside.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", outside)
    (root / "link.ipynb").symlink_to(outside)
    await assert_hidden(fetch, launcher, record_run(root / "link.ipynb"), "a")


async def test_a_renamed_notebook_keeps_its_runs_and_ids_are_exact(root: Path, fetch: Any) -> None:
    run_id = record_run(root / "valid_pipeline.ipynb")
    (root / "valid_pipeline.ipynb").rename(root / "renamed.ipynb")  # the record still names a path in the root
    shown = await fetch(f"runs/{run_id}")
    assert (shown.code, as_json(shown)["path"]) == (200, "valid_pipeline.ipynb")
    assert [r["run_id"] for r in as_json(await fetch("runs"))] == [run_id]
    # a prefix (which the CLI takes) could match a run outside the root too: the API takes whole ids only
    prefix = await fetch(f"runs/{run_id[:-2]}")
    assert prefix.code == 404
    assert as_json(prefix)["message"] == f"no run `{run_id[:-2]}` under the Jupyter root"


async def test_the_run_list_pages_past_runs_outside_the_root(root: Path, fetch: Any, tmp_path: Path) -> None:
    from flyte_lab.server.service import LIST_LIMIT

    inside = record_run(root / "valid_pipeline.ipynb")
    for _ in range(LIST_LIMIT + 1):  # newer than `inside`: a first page of runs that are not shown
        record_run(tmp_path / "outside.ipynb")
    assert [r["run_id"] for r in as_json(await fetch("runs"))] == [inside]


@pytest.mark.cluster
async def test_a_run_outside_the_root_is_not_listed_read_or_resumed(root: Path, fetch: Any, launcher: Any,
                                                                    home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nb = write_notebook(elsewhere / "fails.ipynb", "n = 3",
                        "%%flyte_task make(n: int) -> x: int\nx = n",
                        "%%flyte_task check(x: int) -> y: int\nraise ValueError('not yet')\ny = x")
    done = await asyncio.to_thread(subprocess.run, [*CLI, "run", str(nb), "--workers", "1"], env=cli_env(home),
                                   capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 1, done.stderr  # a failed run: one that `resume` would run again
    with RunStore.from_env(create=False) as store:
        [listed] = store.list_runs()
        run = store.get_run(listed["run_id"])
    assert run["tasks"]["make"]["output_notebook"] and run["tasks"]["check"]["status"] == "failed"
    await assert_hidden(fetch, launcher, run["run_id"], "make")


async def test_a_schedule_outside_the_root_is_not_listed_or_acted_on(root: Path, fetch: Any, home: Path,
                                                                     tmp_path: Path) -> None:
    outside = tmp_path / "outside.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", outside)
    for name, notebook in (("elsewhere", outside), ("here", root / "valid_pipeline.ipynb")):
        added = await asyncio.to_thread(subprocess.run, [*CLI, "schedule", "add", str(notebook), "--cron",
                                                         "0 7 * * *", "--name", name],
                                        env=cli_env(home), capture_output=True, text=True, check=False)
        assert added.returncode == 0, added.stderr
    assert [s["name"] for s in as_json(await fetch("schedules"))] == ["here"]
    for response in (await fetch("schedules/elsewhere/pause", method="POST", body={}),
                     await fetch("schedules/elsewhere/resume", method="POST", body={}),
                     await fetch("schedules/elsewhere", method="DELETE")):
        assert response.code == 404, response.body
        assert as_json(response) == {"message": "no schedule `elsewhere` under the Jupyter root"}
    with RunStore.from_env(create=False) as store:
        assert not store.get_schedule("elsewhere")["paused"]  # still there, untouched
    assert (await fetch("schedules/here/pause", method="POST", body={})).code == 200
