"""One progress for a real failed run: the sidebar's REST answer, the notebook widget and the dashboard's runs table
show the same numbers, successes only, a map-over task counted per element (`flyte_lab/run_progress.py`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.statuses import vocabulary
from tests.conftest import CLI, cli_env
from tests.process_helpers import failing_map_pipeline

pytestmark = pytest.mark.cluster


async def test_a_failed_run_shows_the_same_progress_everywhere(root: Path, fetch: Any, home: Path) -> None:
    notebook = failing_map_pipeline(root / "fails.ipynb")
    done = subprocess.run([*CLI, "run", str(notebook), "--cluster", "local", "--workers", "1", "--json"],
                          env=cli_env(home), capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    # the sidebar: its vocabulary from the config answer, the run's progress with the run
    config = json.loads((await fetch("config")).body)
    assert config["statuses"] == vocabulary()
    answer = json.loads((await fetch(f"runs/{run_id}")).body)
    assert answer["status"] == "failed"
    assert {n: t["status"] for n, t in answer["tasks"].items()} == {
        "make": "succeeded", "square": "succeeded", "total": "failed"}
    assert answer["progress"] == {"done": 4, "total": 5}

    # the widget, as `%flyte_run` refreshes it from the store
    from flyte_lab.kernel_ext.run_follow import RunFollower

    follower = RunFollower(str(notebook), {}, "test")
    follower.run_id = run_id
    follower.finished.set()
    follower.follow()  # one refresh, then its store is closed
    bar = follower.widget.bar
    assert (bar.value, bar.max, bar.description, bar.bar_style) == (4, 5, "4/5", "danger")

    # the dashboard's runs table
    from flyte_lab.dashboard.runs_page import RunsPage
    from flyte_lab.store import RunStore

    with RunStore.from_env(create=False) as store:
        [row] = RunsPage(store).table.value.to_dict("records")
    assert (row["run"], row["status"], row["tasks done"], row["tasks failed"]) == (run_id, "failed", "4/5", 1)
