"""The REST API of the `flyte_lab` server extension, against a real jupyter_server (pytest-jupyter).

Runs launched here are real: a child process drives a local Dask cluster and papermill kernels.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from tests.conftest import CLI, NOTEBOOKS, cli_env
from tests.process_helpers import (
    CANCEL_BOUND_S,
    running_kernels,
    sleeping_notebook,
    time_cancel,
    wait_no_home_processes,
)
from tests.test_lab.conftest import write_notebook
from tests.test_server.conftest import API


def as_json(response: Any) -> Any:
    return json.loads(response.body)


async def test_graph_is_the_validate_json(root: Path, fetch: Any) -> None:
    response = await fetch("graph", params={"path": "valid_pipeline.ipynb"})
    assert response.code == 200
    graph = as_json(response)
    assert [t["name"] for t in graph["tasks"]] == ["make", "stats"]
    assert graph["tasks"][0]["inputs"] == {"n": "int", "seed": "int"}
    assert graph["edges"] == [["make", "stats", "raw"]]
    assert set(graph["workflow_inputs"]) == {"n", "seed"}
    assert graph["diagnostics"] == []


async def test_graph_of_unsaved_content(root: Path, fetch: Any) -> None:
    content = json.loads((root / "valid_pipeline.ipynb").read_text())
    cell = next(c for c in content["cells"] if "".join(c["source"]).startswith("%%flyte_task stats"))
    cell["source"] = "%%flyte_task stats(raw: str) -> (mean: float, count: int)\nmean = 1.0\ncount = 1"
    response = await fetch("graph", method="POST", body={"path": "valid_pipeline.ipynb", "content": content})
    assert response.code == 200
    [diag] = as_json(response)["diagnostics"]
    assert diag["code"] == "type-mismatch"
    assert diag["task"] == "stats"
    assert diag["cell"] == content["cells"].index(cell) + 1
    # the file on disk is untouched and still valid
    assert as_json(await fetch("graph", params={"path": "valid_pipeline.ipynb"}))["diagnostics"] == []


async def test_graph_of_malformed_content_is_bad_notebook(root: Path, fetch: Any) -> None:
    response = await fetch("graph", method="POST", body={"path": "new.ipynb", "content": {"cells": 3}})
    assert response.code == 200
    assert [d["code"] for d in as_json(response)["diagnostics"]] == ["bad-notebook"]


@pytest.mark.parametrize("path", ["../outside.ipynb", "sub/../../outside.ipynb", "/etc/passwd", "missing.ipynb",
                                  "escape.ipynb"])
async def test_paths_outside_the_root_are_404(root: Path, fetch: Any, path: str) -> None:
    outside = root.parent / "outside.ipynb"
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", outside)
    (root / "escape.ipynb").symlink_to(outside)
    for response in (await fetch("graph", params={"path": path}),
                     await fetch("runs", method="POST", body={"path": path, "params": {}}),
                     await fetch("schedules", method="POST", body={"path": path, "cron": "0 7 * * *"})):
        assert response.code == 404, response.body
        assert "no notebook" in as_json(response)["message"]


async def test_encoded_traversal_is_404(root: Path, jp_fetch: Any) -> None:
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", root.parent / "outside.ipynb")
    # `%2e%2e%2f` reaches the handler as `../` (tornado decodes query values once)
    response = await jp_fetch(*API, "graph", params={"path": urllib.parse.unquote("%2e%2e%2foutside.ipynb")},
                              raise_error=False)
    assert response.code == 404
    # double-encoded stays literal text: a file name that does not exist under the root
    response = await jp_fetch(*API, "graph", params={"path": "%2e%2e%2foutside.ipynb"}, raise_error=False)
    assert response.code == 404


@pytest.mark.parametrize(("method", "route", "body"), [
    ("GET", "graph?path=valid_pipeline.ipynb", None),
    ("GET", "runs", None),
    ("GET", "runs/abc", None),
    ("POST", "runs", '{"path": "valid_pipeline.ipynb"}'),
    ("POST", "runs/abc/resume", "{}"),
    ("POST", "runs/abc/relaunch", "{}"),
    ("POST", "runs/abc/cancel", "{}"),
    ("GET", "schedules", None),
    ("POST", "schedules", '{"path": "valid_pipeline.ipynb", "cron": "0 7 * * *"}'),
    ("DELETE", "schedules/x", None),
    ("GET", "schedules/preview?cron=0+7+*+*+*", None),
])
async def test_every_route_needs_credentials(root: Path, http_server_client: Any, jp_base_url: str,
                                             method: str, route: str, body: str | None) -> None:
    response = await http_server_client.fetch(f"{jp_base_url}flyte-lab/api/{route}", method=method, body=body,
                                              raise_error=False)
    assert response.code in (401, 403)


async def test_cookie_writes_need_xsrf(root: Path, http_server_client: Any, jp_base_url: str,
                                       jp_serverapp: Any) -> None:
    token = jp_serverapp.identity_provider.token
    login = await http_server_client.fetch(f"{jp_base_url}login", raise_error=False)
    xsrf = next(c.split(";")[0].split("=", 1)[1] for c in login.headers.get_list("Set-Cookie")
                if c.startswith("_xsrf="))
    form = urllib.parse.urlencode({"password": token, "_xsrf": xsrf})
    answer = await http_server_client.fetch(f"{jp_base_url}login", method="POST", body=form, follow_redirects=False,
                                            headers={"Cookie": f"_xsrf={xsrf}"}, raise_error=False)
    cookies = "; ".join(c.split(";")[0] for c in answer.headers.get_list("Set-Cookie")) + f"; _xsrf={xsrf}"
    url = f"{jp_base_url}flyte-lab/api/schedules"
    body = json.dumps({"path": "valid_pipeline.ipynb", "cron": "0 7 * * *"})
    read = await http_server_client.fetch(url, headers={"Cookie": cookies}, raise_error=False)
    assert read.code == 200  # the cookie authenticates reads
    refused = await http_server_client.fetch(url, method="POST", body=body, headers={"Cookie": cookies},
                                             raise_error=False)
    assert refused.code == 403
    accepted = await http_server_client.fetch(url, method="POST", body=body, raise_error=False,
                                              headers={"Cookie": cookies, "X-XSRFToken": xsrf})
    assert accepted.code == 201, accepted.body


async def test_invalid_notebook_is_400_with_diagnostics(root: Path, fetch: Any) -> None:
    response = await fetch("runs", method="POST", body={"path": "type_mismatch.ipynb", "params": {}})
    assert response.code == 400
    body = as_json(response)
    assert "type-mismatch" in body["message"]
    assert [d["code"] for d in body["diagnostics"]] == ["type-mismatch"]
    assert as_json(await fetch("runs")) == []  # nothing stored


async def test_bad_requests_are_400(root: Path, fetch: Any) -> None:
    cases = [
        await fetch("runs", method="POST", body="not json"),
        await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", "oops": 1}),
        await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", "cluster": "http://x"}),
        await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", "params": {"nope": 1}}),
        await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", "params": {"n": "ten"}}),
        await fetch("graph"),
    ]
    for response in cases:
        assert response.code == 400, response.body
        assert as_json(response)["message"]


async def test_unknown_runs_are_404(root: Path, fetch: Any) -> None:
    for response in (await fetch("runs/nosuchrun"), await fetch("runs/nosuchrun/resume", method="POST", body={}),
                     await fetch("runs/nosuchrun/cancel", method="POST", body={})):
        assert response.code == 404
        assert "nosuchrun" in as_json(response)["message"]


@pytest.mark.cluster
async def test_an_executed_notebook_is_answered_without_trust_marks(root: Path, fetch: Any, home: Path) -> None:
    shutil.copy(NOTEBOOKS / "html_output_xss.ipynb", root / "html_output_xss.ipynb")
    subprocess.run([*CLI, "run", str(root / "html_output_xss.ipynb")], env=cli_env(home), timeout=240,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    [run] = as_json(await fetch("runs"))
    stored = Path(as_json(await fetch(f"runs/{run['run_id']}"))["tasks"]["report"]["output_notebook"])
    # marked trusted, as Lab marks a notebook it saves: the file is the task's to write, the view trusts none
    content = json.loads(stored.read_text(encoding="utf-8"))
    content["metadata"]["trusted"] = True
    for cell in content["cells"]:
        cell["metadata"]["trusted"] = True
    stored.write_text(json.dumps(content), encoding="utf-8")
    answered = as_json(await fetch(f"runs/{run['run_id']}/tasks/report/notebook"))["content"]
    assert "trusted" not in answered["metadata"]
    assert [c["metadata"].get("trusted") for c in answered["cells"]] == [None] * len(content["cells"])
    # the rest is as written: Lab sanitises an untrusted notebook's outputs itself
    assert [c.get("outputs") for c in answered["cells"]] == [c.get("outputs") for c in content["cells"]]


@pytest.mark.cluster
async def test_a_run_launched_here_finishes_for_real(root: Path, fetch: Any, launcher: Any) -> None:
    try:
        response = await fetch("runs", method="POST", body={"path": "valid_pipeline.ipynb", "params": {"n": "5"}})
        assert response.code == 201, response.body
        run_id = as_json(response)["run_id"]
        assert launcher.children  # the run goes on in its own process, after the request returned
    finally:
        await launcher.wait_all()  # no run process outlives its test
    run = as_json(await fetch(f"runs/{run_id}"))
    assert run["status"] == "succeeded", run
    assert run["params"] == {"n": 5}
    assert run["path"] == "valid_pipeline.ipynb"
    assert run["tasks"]["stats"]["outputs"]["count"]["preview"] == "5"
    listed = as_json(await fetch("runs", params={"path": "valid_pipeline.ipynb"}))
    assert [r["run_id"] for r in listed] == [run_id]
    assert as_json(await fetch("runs", params={"path": "type_mismatch.ipynb"})) == []
    executed = as_json(await fetch(f"runs/{run_id}/tasks/stats/notebook"))
    assert executed["content"]["cells"]
    cancel = await fetch(f"runs/{run_id}/cancel", method="POST", body={})
    assert (cancel.code, as_json(cancel)["state"]) == (202, "succeeded")
    # resume of a succeeded, unchanged run: refused by the engine in the launched process -> 400
    try:
        resume = await fetch(f"runs/{run_id}/resume", method="POST", body={})
    finally:
        await launcher.wait_all()
    assert resume.code == 400
    assert "already succeeded" in as_json(resume)["message"]
    # relaunch: a new run of the same notebook with the same parameters, its id answered at once
    try:
        relaunch = await fetch(f"runs/{run_id}/relaunch", method="POST", body={})
        assert relaunch.code == 201, relaunch.body
    finally:
        await launcher.wait_all()
    new_id = as_json(relaunch)["run_id"]
    assert new_id != run_id
    again = as_json(await fetch(f"runs/{new_id}"))
    assert (again["status"], again["params"], again["path"]) == ("succeeded", {"n": 5}, "valid_pipeline.ipynb")
    refused = await fetch(f"runs/{run_id}/relaunch", method="POST", body={"cluster": "local"})
    assert refused.code == 400  # nothing to choose for a relaunch: an unknown field is refused


@pytest.mark.cluster
@pytest.mark.timeout(200)
async def test_the_cancel_route_stops_a_run_and_its_kernels_within_about_a_second(
        root: Path, fetch: Any, launcher: Any, home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    sleeping_notebook(root / "sleepers.ipynb", marks)
    try:
        response = await fetch("runs", method="POST", body={"path": "sleepers.ipynb", "workers": 2})
        assert response.code == 201, response.body
        run_id = as_json(response)["run_id"]
        (child,) = launcher.children
        deadline = time.monotonic() + 90
        while not (kernels := running_kernels(marks, None, 2)):
            assert child.running() and time.monotonic() < deadline, "the sleeping tasks never started"
            await asyncio.sleep(0.2)

        refused = await fetch(f"runs/{run_id}/cancel", method="POST", body={"by": "cli"})
        assert refused.code == 400 and "by" in as_json(refused)["message"]  # only the sidebar names itself
        cancel = await fetch(f"runs/{run_id}/cancel", method="POST", body={"by": "sidebar"})
        assert (cancel.code, as_json(cancel)["state"]) == (202, "requested")
        timings = time_cancel(home, run_id, kernels, {"the run's process": child.pid})
        assert max(timings.values()) <= CANCEL_BOUND_S, timings
    finally:
        await launcher.wait_all()
    run = as_json(await fetch(f"runs/{run_id}"))
    assert (run["status"], run["cancelled_by"]) == ("cancelled", "sidebar")
    assert {name: task["status"] for name, task in run["tasks"].items()} == {
        "left": "cancelled", "right": "cancelled", "both": "skipped"}
    assert run["tasks"]["left"]["error"] == {"type": "Cancelled", "message": "cancelled from the JupyterLab sidebar"}
    assert run["progress"] == {"done": 0, "total": 3}  # nothing finished successfully: an empty bar, not a full one
    [summary] = as_json(await fetch("runs", params={"path": "sleepers.ipynb"}))
    assert (summary["cancelled_by"], summary["progress"]) == ("sidebar", {"done": 0, "total": 3})
    wait_no_home_processes(home, 10, only_kernels=True)


async def test_schedules_add_list_pause_resume_remove(root: Path, fetch: Any) -> None:
    preview = await fetch("schedules/preview", params={"cron": "0 7 * * 1", "timezone": "Europe/Paris"})
    assert preview.code == 200
    fires = as_json(preview)["fire_times"]
    assert len(fires) == 5 and all(f.endswith(("+01:00", "+02:00")) and "T07:00:00" in f for f in fires)
    assert (await fetch("schedules/preview", params={"cron": "61 * * * *"})).code == 400

    body = {"path": "valid_pipeline.ipynb", "cron": "0 7 * * *", "name": "daily", "params": {"n": "3"}}
    created = await fetch("schedules", method="POST", body=body)
    assert created.code == 201, created.body
    schedule = as_json(created)
    assert (schedule["name"], schedule["path"], schedule["params"]) == ("daily", "valid_pipeline.ipynb", {"n": "3"})
    assert schedule["next_fire_time"]
    assert (await fetch("schedules", method="POST", body=body)).code == 409
    assert (await fetch("schedules", method="POST", body=dict(body, name="bad", cron="nope"))).code == 400
    refused = await fetch("schedules", method="POST", body=dict(body, name="bad2", path="type_mismatch.ipynb"))
    assert refused.code == 400
    assert as_json(refused)["diagnostics"][0]["code"] == "type-mismatch"

    assert [s["name"] for s in as_json(await fetch("schedules", params={"path": "valid_pipeline.ipynb"}))] == ["daily"]
    assert as_json(await fetch("schedules", params={"path": "type_mismatch.ipynb"})) == []
    assert (await fetch("schedules/daily/pause", method="POST", body={})).code == 200
    [paused] = as_json(await fetch("schedules"))
    assert paused["paused"] and paused["next_fire_time"] is None
    assert (await fetch("schedules/daily/resume", method="POST", body={})).code == 200
    assert as_json(await fetch("schedules"))[0]["next_fire_time"]
    assert (await fetch("schedules/daily", method="DELETE")).code == 204
    assert (await fetch("schedules/daily", method="DELETE")).code == 404
    assert as_json(await fetch("schedules")) == []


def test_status_table_maps_user_errors_to_4xx() -> None:
    from flyte_lab import errors
    from flyte_lab.server.errors import status_for

    for exc in (errors.UserInputError("x"), errors.ValidationFailed("x"), errors.ParameterError("x"),
                errors.NotebookReadError("x"), errors.RunNotFound("x"), errors.RunBusy("x")):
        assert 400 <= status_for(exc) < 500
    assert status_for(RuntimeError("boom")) == 500
    assert isinstance(tornado.httpclient.HTTPClientError(400), Exception)


TYPED = [
    "%load_ext flyte_lab",
    "%%flyte_setup\nimport datetime",
    "count = 3\nverbose = False\nday = '2024-01-02'",
    "%%flyte_task summarize(count: int, verbose: bool, day: datetime.date, ratio: float = 0.5, "
    "tags: list[str] = ['a'], opts: dict[str, int] = {}, when: datetime.datetime = '2024-01-01T12:00:00', "
    "maybe: int | None = None, every: datetime.timedelta = 90, label: str = 'x') -> text: str\n"
    "text = f'{count} {verbose} {day.isoformat()} {ratio} {tags}'",
]


async def test_graph_describes_the_input_form(root: Path, fetch: Any) -> None:
    write_notebook(root / "typed.ipynb", TYPED, parameters_cell=2)
    graph = as_json(await fetch("graph", params={"path": "typed.ipynb"}))
    fields = {f["name"]: f for f in graph["input_fields"]}
    shown = {n: (f["widget"], f["default_text"], f["required"], f["optional"]) for n, f in fields.items()}
    assert shown == {
        "count": ("int", "3", False, False), "verbose": ("bool", "false", False, False),
        "day": ("date", "2024-01-02", False, False), "ratio": ("float", "0.5", False, False),
        "tags": ("json", '["a"]', False, False), "opts": ("json", "{}", False, False),
        "when": ("datetime", "2024-01-01T12:00:00", False, False), "maybe": ("int", "", False, True),
        "every": ("timedelta", "90", False, False), "label": ("str", "x", False, False),
    }
    assert (fields["tags"]["json_shape"], fields["opts"]["json_shape"]) == ("array", "object")
    assert fields["day"]["type"] == "datetime.date"
    # every pre-filled text is launch text the server takes back as the same value
    params = {n: f["default_text"] for n, f in fields.items() if f["default_text"]}
    response = await fetch("graph", method="POST", body={
        "path": "typed.ipynb", "content": json.loads((root / "typed.ipynb").read_text()), "params": params})
    assert as_json(response)["diagnostics"] == []
    from flyte_lab.graph.validate import resolve_params, validate_notebook

    assert resolve_params(validate_notebook(str(root / "typed.ipynb")), params)["tags"] == ["a"]


async def test_the_server_judges_form_values(root: Path, fetch: Any) -> None:
    write_notebook(root / "typed.ipynb", TYPED, parameters_cell=2)
    for name, text in (("day", "2024-13-40"), ("count", "2.5"), ("tags", "[1,"), ("verbose", "perhaps")):
        response = await fetch("runs", method="POST", body={"path": "typed.ipynb", "params": {name: text}})
        assert response.code == 400, response.body
        assert as_json(response)["message"].startswith(f"-p {name}=")  # the sidebar puts it next to the input
    assert as_json(await fetch("runs")) == []


async def test_schedule_add_takes_what_the_cli_takes(root: Path, fetch: Any) -> None:
    preview = as_json(await fetch("schedules/preview", params={"every": "15m", "start": "2030-01-01T00:00",
                                                              "timezone": "Europe/Paris"}))
    assert preview["fire_times"][:2] == ["2030-01-01T00:00:00+01:00", "2030-01-01T00:15:00+01:00"]
    body = {"path": "valid_pipeline.ipynb", "every": "15m", "name": "often", "params": {"n": "7"},
            "start": "2030-01-01T00:00", "timezone": "Europe/Paris", "catchup": True, "max_catchup": 3,
            "max_active": 2, "overlap": "queue",
            "notify": ["failed=https://hooks.example.com/services/T0/B0/secretkey", "succeeded=mailto:t@example.com"]}
    created = await fetch("schedules", method="POST", body=body)
    assert created.code == 201, created.body
    s = as_json(created)
    assert (s["every_s"], s["cron"], s["params"], s["catchup"], s["max_catchup"], s["max_active"], s["overlap"]) == \
        (900, None, {"n": "7"}, True, 3, 2, "queue")
    assert s["next_fire_time"] == "2029-12-31T23:00:00+00:00"  # 00:00 in Paris, as UTC
    assert len(s["notify"]) == 2 and "secretkey" not in json.dumps(s)  # the hook's key is not shown
    from flyte_lab.store import RunStore

    with RunStore.from_env(create=False) as store:
        [row] = store.list_schedules()
    assert row["notify"][0] == "failed=https://hooks.example.com/services/T0/B0/secretkey"
    for bad in ({"notify": ["sometimes=https://x.example.com"]}, {"notify": ["failed=ftp://x"]},
                {"overlap": "never"}, {"max_catchup": 0}, {"every": "soon"}, {"params": {"n": "many"}}):
        refused = await fetch("schedules", method="POST", body=dict(body, name="bad", **bad))
        assert refused.code == 400, (bad, refused.body)
        assert as_json(refused)["message"]
    assert [x["name"] for x in as_json(await fetch("schedules"))] == ["often"]


BAD_TIMINGS = [  # (body or preview fields, what the message says)
    ({"cron": "0 0 31 2 *"}, "--cron `0 0 31 2 *`: no fire time within ten years"),
    ({"cron": "0 0 30 2 *", "timezone": "America/New_York"}, "never fires"),
    ({"every": "0.0000001s"}, "--every `0.0000001s`: an interval is at least 1s"),
    ({"every": "99999999999999d"}, "an interval is at most 3653d"),
    ({"every": "1s", "start": "9999-12-31T23:59:58"}, "its fire times run past year 9999"),
    ({"every": "1s", "start": "10000-01-01"}, "--start `10000-01-01`: out of range"),
    ({"every": "1h", "start": "1900-01-01"}, "a schedule starts on 1970-01-01 or later"),
    ({"every": "1h", "max_catchup": 10**20}, "--max-catchup must be at least 1 and at most"),
]


@pytest.mark.parametrize(("fields", "says"), BAD_TIMINGS)
async def test_a_schedule_that_never_fires_or_overflows_is_400_and_nothing_is_stored(
        root: Path, fetch: Any, fields: dict[str, Any], says: str) -> None:
    refused = await fetch("schedules", method="POST", body={"path": "valid_pipeline.ipynb", "name": "bad", **fields})
    assert refused.code == 400, refused.body
    assert says in as_json(refused)["message"]
    assert as_json(await fetch("schedules")) == []
    if "max_catchup" not in fields:  # the preview checks the timing as saving does
        preview = await fetch("schedules/preview", params=fields)
        assert preview.code == 400, preview.body
        assert says in as_json(preview)["message"]


async def test_schedule_list_marks_stored_rows_that_cannot_be_read(home: Path, root: Path, fetch: Any) -> None:
    from tests.test_sched_cli import spoil, spoiled_rows

    bad = spoiled_rows()
    for name in ["good", *bad]:
        created = await fetch("schedules", method="POST", body={"path": "valid_pipeline.ipynb", "name": name,
                                                                "every": "1h"})
        assert created.code == 201, created.body
    for name, (assignment, _) in bad.items():
        spoil(home, name, assignment)
    listed = await fetch("schedules")
    assert listed.code == 200, listed.body
    rows = {r["name"]: r for r in as_json(listed)}
    assert rows["good"]["invalid"] is None and rows["good"]["next_fire_time"]
    assert {name: why in (rows[name]["invalid"] or "") for name, (_, why) in bad.items()} == dict.fromkeys(bad, True)


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(("route", "body"), [
    ("graph", "[" * 100_000 + "]" * 100_000),
    ("runs", "[" * 100_000 + "]" * 100_000),
    ("schedules", "{" + '"a": {' * 100_000 + "}" * 100_001),
    # parses, but a notebook reader would recurse past Python's limit on it
    ("graph", '{"path": "x.ipynb", "content": {"cells": [], "metadata": {"deep": ' + _nested(500) + "}}}"),
    ("runs", '{"path": "valid_pipeline.ipynb", "params": {"n": ' + _nested(101) + "}}"),
])
async def test_deeply_nested_bodies_are_400(root: Path, fetch: Any, route: str, body: str) -> None:
    response = await fetch(route, method="POST", body=body)
    assert response.code == 400, response.body[:300]
    assert as_json(response)["message"] == "the request body nests lists or objects deeper than 100 levels"
    assert as_json(await fetch("runs")) == [] and as_json(await fetch("schedules")) == []
