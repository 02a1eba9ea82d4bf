"""`"select"` in `POST runs` (issue 19) and `POST runs/ID/relaunch` (issue 20): the CLI's partial runs, refusals
as 400 with one message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.store import RunStore


def as_json(response: Any) -> Any:
    return json.loads(response.body)


async def _launch(fetch: Any, launcher: Any, **body: Any) -> Any:
    try:
        return await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", **body})
    finally:
        await launcher.wait_all()  # no run process outlives its test


@pytest.mark.cluster
async def test_select_runs_part_of_the_graph_on_an_earlier_runs_outputs(root: Path, fetch: Any,
                                                                        launcher: Any) -> None:
    refused = await _launch(fetch, launcher, select={"only": ["stats"]})  # nothing ran yet
    assert refused.code == 400
    assert as_json(refused)["message"].startswith("--only stats: cannot take the outputs of task `make`")
    assert as_json(await fetch("runs", params={"path": "valid_pipeline.ipynb"})) == []

    full = await _launch(fetch, launcher, params={"n": "5"})
    assert full.code == 201, full.body
    full_id = as_json(full)["run_id"]
    partial = await _launch(fetch, launcher, params={"n": "5"}, select={"only": ["stats"]})
    assert partial.code == 201, partial.body
    run = as_json(await fetch(f"runs/{as_json(partial)['run_id']}"))
    assert run["status"] == "succeeded", run
    assert run["tasks"]["make"]["status"] == "reused" and run["tasks"]["stats"]["status"] == "succeeded"
    assert run["tasks"]["make"]["reused_from"] == {"run_id": full_id, "attempt": 1, "changed": False}
    assert run["partial"]["select"] == {"only": ["stats"], "from": None, "to": None}

    other_n = await _launch(fetch, launcher, params={"n": "6"}, select={"only": ["stats"]})  # make's input differs
    assert other_n.code == 400
    assert f"its code, setup cells or inputs changed since run {full_id}" in as_json(other_n)["message"]

    # a relaunch takes the same `select`: the full run again, but only `stats`, `make` taken from an earlier run
    try:
        again = await fetch(f"runs/{full_id}/relaunch", method="POST", body={"select": {"only": ["stats"]}})
    finally:
        await launcher.wait_all()
    assert again.code == 201, again.body
    relaunched = as_json(await fetch(f"runs/{as_json(again)['run_id']}"))
    assert relaunched["status"] == "succeeded", relaunched
    assert relaunched["params"] == {"n": 5}  # the relaunched run's parameters
    assert relaunched["tasks"]["make"]["status"] == "reused" and relaunched["tasks"]["stats"]["status"] == "succeeded"
    assert relaunched["partial"]["select"] == {"only": ["stats"], "from": None, "to": None}


@pytest.mark.parametrize(("body", "fragment"), [
    ({"select": {"only": ["zz"]}}, "--only zz: the notebook has no task `zz`"),
    ({"select": {"only": ["stats"], "from": "make"}}, "--only cannot be combined with --from"),
    ({"select": {"to": "make"}, "allow_changed": True}, "--allow-changed needs --reuse"),
    ({"select": {"oops": 1}}, "oops"),
])
async def test_bad_selections_are_400(root: Path, fetch: Any, launcher: Any, body: dict[str, Any],
                                      fragment: str) -> None:
    response = await _launch(fetch, launcher, **body)
    assert response.code == 400, response.body
    assert fragment in as_json(response)["message"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"select": {"only": ["zz"]}}, "--only zz: the notebook has no task `zz`"),
    ({"select": {"only": ["stats"], "from": "make"}}, "--only cannot be combined with --from"),
    ({"select": {"from": "make", "oops": 1}}, "oops"),
    ({"select": {"only": "stats"}}, "only"),
])
async def test_a_relaunch_with_a_bad_selection_is_400_and_records_nothing(root: Path, fetch: Any, launcher: Any,
                                                                          body: dict[str, Any],
                                                                          fragment: str) -> None:
    with RunStore.from_env() as store:  # a run of the root's notebook as the store records it: nothing need run
        run_id = store.create_run(str(root / "valid_pipeline.ipynb"), {}, {"tasks": [], "edges": []},
                                  [{"name": "make", "cell": 2}, {"name": "stats", "cell": 3}], "local")
    try:
        response = await fetch(f"runs/{run_id}/relaunch", method="POST", body=body)
    finally:
        await launcher.wait_all()
    assert response.code == 400, response.body
    message = as_json(response)["message"]
    assert fragment in message and len(message.splitlines()) == 1
    with RunStore.from_env(create=False) as store:
        assert [r["run_id"] for r in store.list_runs()] == [run_id]
