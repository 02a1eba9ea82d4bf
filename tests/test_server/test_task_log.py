"""REST `GET runs/ID/tasks/TASK/log?since=N` (issue 20): a running task's lines while it runs, paged by id."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.test_live_output import ticker_notebook


def as_json(response: Any) -> Any:
    return json.loads(response.body)


async def test_the_log_route_serves_a_running_tasks_lines_page_by_page(root: Path, fetch: Any,
                                                                      launcher: Any) -> None:
    ticker_notebook(root / "ticker.ipynb")
    try:
        started = await fetch("runs", method="POST", body={"path": "ticker.ipynb", "cluster": "local"})
        assert started.code == 201, started.body
        run_id = as_json(started)["run_id"]
        lines: list[str] = []
        since, deadline = 0, time.monotonic() + 90
        while len(lines) < 3:
            assert time.monotonic() < deadline, f"three lines within 90 s, got {lines}"
            page = as_json(await fetch(f"runs/{run_id}/tasks/tick/log", params={"since": str(since)}))
            assert page["next"] >= since and all(line["id"] > since for line in page["lines"])
            lines += [line["text"] for line in page["lines"]]
            since = page["next"]
            await asyncio.sleep(0.3)
        assert page["status"] == "running", page  # read while the task runs
        assert lines[:3] == ["tick 0", "tick 1", "tick 2"]
        assert as_json(await fetch(f"runs/{run_id}/tasks/after/log"))["lines"] == []  # not started yet
        for bad, code, says in (({"since": "-1"}, 400, "`since` must be a line id"),
                                ({"since": "x"}, 400, "`since` must be a line id")):
            refused = await fetch(f"runs/{run_id}/tasks/tick/log", params=bad)
            assert (refused.code, says in as_json(refused)["message"]) == (code, True)
        missing = await fetch(f"runs/{run_id}/tasks/nope/log")
        assert missing.code == 404 and "has no task `nope`" in as_json(missing)["message"]
        assert (await fetch("runs/nosuchrun/tasks/tick/log")).code == 404
        cancelled = await fetch(f"runs/{run_id}/cancel", method="POST", body={"by": "rest"})
        assert cancelled.code == 202
    finally:
        await launcher.wait_all()  # no run process outlives its test


async def test_a_since_that_is_no_line_id_is_refused_with_400_not_500(root: Path, fetch: Any) -> None:
    from flyte_lab.store import RunStore

    with RunStore.from_env() as store:  # a run of a notebook under the server's root (the routes confine runs)
        run_id = store.create_run(str(root / "t.ipynb"), {}, {"tasks": [], "edges": []},
                                  [{"name": "tick", "cell": 1}], "local")
    for bad in ("²", "١٢", "9" * 19, "99999999999999999999999999", "+1", "-0", ""):
        refused = await fetch(f"runs/{run_id}/tasks/tick/log", params={"since": bad})
        assert refused.code == 400, (bad, refused.code, refused.body)
        assert "`since` must be a line id" in as_json(refused)["message"]
    largest = await fetch(f"runs/{run_id}/tasks/tick/log", params={"since": "9" * 18})
    assert largest.code == 200 and as_json(largest)["lines"] == []
