"""A run launched through the REST API survives the Jupyter server that launched it; the server's launch template
(the process each run is forked from) does not."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import psutil
import pytest

from tests.test_lab.conftest import write_notebook

pytestmark = pytest.mark.cluster


def test_run_outlives_the_server(lab: Any) -> None:
    # the task waits until the server is gone (the test's release file): the run cannot end before the check
    release = lab.root / "release"
    write_notebook(lab.root / "waits.ipynb", [
        "%%flyte_setup\nimport time\nfrom pathlib import Path",
        "%%flyte_task stats(release: str) -> count: int\n"
        "deadline = time.monotonic() + 120\n"
        "while not Path(release).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "count = 2"])
    request = urllib.request.Request(
        f"{lab.url}flyte-lab/api/runs", method="POST",
        data=json.dumps({"path": "waits.ipynb", "params": {"release": str(release)}}).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
    with direct.open(request, timeout=120) as answer:
        assert answer.status == 201
        run_id = json.loads(answer.read())["run_id"]
    # the run's process is a fork of the server's launch template, in a session of its own
    [template] = [p for p in psutil.Process(lab.proc.pid).children() if "launch_template" in " ".join(p.cmdline())]
    [driver] = template.children()
    assert os.getsid(driver.pid) == driver.pid
    lab.proc.terminate()  # the server goes away while the run is going on
    lab.proc.wait(30)
    assert driver.is_running()
    template.wait(30)  # the template goes with its server
    release.touch()
    driver.wait(150)  # not our child: psutil waits by polling, without an exit code
    from flyte_lab.store import RunStore

    with RunStore.from_env(lab.home, create=False) as store:
        record = store.get_run(run_id)
    assert record["status"] == "succeeded", record
    assert record["tasks"]["stats"]["outputs"]["count"]["preview"] == "2"
