"""Runs launched from Jupyter are forks of the launch template (a process that imported the engine once), with the
isolation and protocol of a run started as a new interpreter; a dead, refusing or stale template never loses a
launch, and no template outlives its server.

Each launched run here waits for a release file the test creates (`gated_notebook`), so its process is checked
while it runs, whatever the machine's load.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from flyte_lab.store import RunStore
from tests.ordinary_user import OrdinaryUser, ordinary_user
from tests.process_helpers import wait_for, wait_no_home_processes, write_notebook

__all__ = ["ordinary_user"]
pytestmark = pytest.mark.cluster

GATE = ("import os, time\n"
        "deadline = time.monotonic() + 120\n"
        "while not os.path.exists(release) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n")


def gated_notebook(path: Path) -> Path:
    """One task that waits for `release`, fails unless `flag` exists, and outputs the environment's probe."""
    return write_notebook(
        path, "release = ''\nflag = ''",
        "%%flyte_task work(release: str, flag: str) -> probe: str\n" + GATE
        + "assert os.path.exists(flag), 'no flag yet'\nprobe = os.environ.get('FLYTE_LAB_TEST_PROBE', '')")


def as_json(response: Any) -> Any:
    return json.loads(response.body)


@pytest.fixture
def no_leftovers(launcher: Any, home: Path) -> Iterator[None]:
    """After the test: the extension's stop ends the template, and no run, kernel or template is left."""
    yield
    launcher.close()
    wait_no_home_processes(home, 30)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def said(launcher: Any) -> Iterator[Callable[[str], list[str]]]:
    """The extension's lines in the server's log that contain some words."""
    handler = _Lines()
    launcher.log.addHandler(handler)
    try:
        yield lambda words: [m for m in handler.lines if m.startswith("flyte_lab:") and words in m]
    finally:
        launcher.log.removeHandler(handler)


def launch_params(tmp_path: Path, name: str, flag: Path | None = None) -> tuple[Path, dict[str, str]]:
    release = tmp_path / f"release-{name}"
    return release, {"release": str(release), "flag": str(flag or release)}


async def launched(fetch: Any, launcher: Any, route: str, params: dict[str, str] | None = None) -> tuple[str, Any]:
    """POST `route`; the run id it answers and the one run process now live."""
    body = {"path": "gated.ipynb", "params": params} if params is not None else {}
    response = await fetch(*route.split("/"), method="POST", body=body)
    assert response.code in (201, 202), response.body
    [child] = [c for c in launcher.children if c.running()]
    return as_json(response)["run_id"], child


async def finish(launcher: Any, *releases: Path) -> None:
    """Release every gated run (a failed check must not leave them waiting) and wait for them to end."""
    for release in releases:
        release.touch()
    await launcher.wait_all()


def assert_forked(launcher: Any, pid: int) -> None:
    """The run's process is a fork of the current template: its child, the same command line (no new
    interpreter was exec'd: a spawned one is `python -m flyte_lab.run_launch`), leading its own session."""
    run, template = psutil.Process(pid), psutil.Process(launcher.template.pid)
    assert run.ppid() == template.pid
    assert run.cmdline() == template.cmdline()
    assert "flyte_lab.server.launch_template" in " ".join(run.cmdline())
    assert os.getsid(pid) == pid != os.getsid(template.pid)


def assert_spawned(pid: int) -> None:
    assert psutil.Process(pid).cmdline()[1:3] == ["-m", "flyte_lab.run_launch"]


def record(run_id: str) -> dict[str, Any]:
    with RunStore.from_env(create=False) as store:
        return {**store.run_record(run_id), **store.get_run(run_id)}


async def test_runs_and_resumes_are_forks_that_drive_as_the_cli_does(
        root: Path, fetch: Any, launcher: Any, home: Path, tmp_path: Path, no_leftovers: None) -> None:
    gated_notebook(root / "gated.ipynb")
    flag = tmp_path / "flag"
    release, params = launch_params(tmp_path, "first", flag)
    try:
        run_id, child = await launched(fetch, launcher, "runs", params)
        assert_forked(launcher, child.pid)
        # the template imported the engine but runs none of it: no Dask cluster listening, no store open
        template = psutil.Process(launcher.template.pid)
        assert template.net_connections(kind="inet") == []
        assert [f.path for f in template.open_files() if f.path.startswith(str(home))] == []
        # its driver holds the lease under its own pid; its log is the file the server chose; stdout detached
        driving = wait_for(lambda: (r := record(run_id))["driver_pid"] and r, 60, "the run's driver")
        assert driving["driver_pid"] == child.pid
        assert driving["lease_owner"].split(":")[1] == str(child.pid)
        assert Path(os.readlink(f"/proc/{child.pid}/fd/2")).parent == home / "lab-logs"
        wait_for(lambda: os.readlink(f"/proc/{child.pid}/fd/1") == os.devnull, 10, "stdout detached after the answer")
        release.touch()
        await launcher.wait_all()
        assert record(run_id)["status"] == "failed"  # no flag yet: fixed below, then resumed

        flag.touch()
        release.unlink()
        resumed, child = await launched(fetch, launcher, f"runs/{run_id}/resume")
        assert resumed == run_id
        assert_forked(launcher, child.pid)
        release.touch()
        await launcher.wait_all()
        assert record(run_id)["status"] == "succeeded"
        # a refusal from the run's process (the engine's, after the fork) answers as before
        refused = await fetch("runs", run_id, "resume", method="POST", body={})
    finally:
        await finish(launcher, release)
    assert refused.code == 400
    assert "already succeeded" in as_json(refused)["message"]


async def test_a_killed_template_does_not_lose_the_next_launch(
        root: Path, fetch: Any, launcher: Any, tmp_path: Path, said: Callable[[str], list[str]],
        no_leftovers: None) -> None:
    gated_notebook(root / "gated.ipynb")
    assert (await fetch("config")).code == 200  # the sidebar's first request starts the template
    killed = launcher.template.pid
    os.kill(killed, signal.SIGKILL)
    first, params = launch_params(tmp_path, "first")
    second, params2 = launch_params(tmp_path, "second")
    try:
        run_id, child = await launched(fetch, launcher, "runs", params)
        assert_spawned(child.pid)  # this launch: as before the template existed
        failures = said("launch template failed")
        assert len(failures) == 1, failures  # said once, with why
        assert "exited (exit -9" in failures[0] and failures[0].endswith("the next launch starts a new template")
        assert launcher.template is not None and launcher.template.pid != killed  # started for the next launch
        first.touch()
        await launcher.wait_all()

        again, child = await launched(fetch, launcher, "runs", params2)
        assert_forked(launcher, child.pid)
    finally:
        await finish(launcher, first, second)
    assert record(run_id)["status"] == record(again)["status"] == "succeeded"


async def test_a_template_that_cannot_fork_does_not_lose_the_launch(
        root: Path, fetch: Any, launcher: Any, tmp_path: Path, said: Callable[[str], list[str]],
        monkeypatch: pytest.MonkeyPatch, no_leftovers: None) -> None:
    # a sitecustomize that starts a thread: a fork of that process could inherit its state half-copied
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(600,), name='sitecustomize-sleeper', daemon=True).start()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    gated_notebook(root / "gated.ipynb")
    release, params = launch_params(tmp_path, "only")
    try:
        run_id, child = await launched(fetch, launcher, "runs", params)
        assert_spawned(child.pid)
    finally:
        await finish(launcher, release)
    assert record(run_id)["status"] == "succeeded"
    [failure] = said("launch template failed")
    assert "cannot fork" in failure and "sitecustomize-sleeper" in failure


async def test_a_changed_environment_gets_a_new_template(
        root: Path, fetch: Any, launcher: Any, tmp_path: Path, said: Callable[[str], list[str]],
        monkeypatch: pytest.MonkeyPatch, no_leftovers: None) -> None:
    gated_notebook(root / "gated.ipynb")
    monkeypatch.setenv("FLYTE_LAB_TEST_PROBE", "before")
    assert (await fetch("config")).code == 200
    old = launcher.template.pid
    monkeypatch.setenv("FLYTE_LAB_TEST_PROBE", "after")  # the server's environment changes after the start
    release, params = launch_params(tmp_path, "only")
    try:
        run_id, child = await launched(fetch, launcher, "runs", params)
        assert launcher.template.pid != old and not psutil.pid_exists(old)
        assert_forked(launcher, child.pid)
    finally:
        await finish(launcher, release)
    run = record(run_id)
    assert run["status"] == "succeeded"
    assert run["tasks"]["work"]["outputs"]["probe"]["preview"] == "'after'"  # the run and its kernels have it
    [changed] = said("changed since")
    assert "the environment (FLYTE_LAB_TEST_PROBE) changed" in changed
    assert "before" not in changed and "after" not in changed  # names only: values may be secrets


async def test_a_forked_run_outlives_the_extension_and_its_template(
        root: Path, fetch: Any, launcher: Any, jp_serverapp: Any, tmp_path: Path, no_leftovers: None) -> None:
    gated_notebook(root / "gated.ipynb")
    release, params = launch_params(tmp_path, "only")
    run_id, child = await launched(fetch, launcher, "runs", params)
    run, template = psutil.Process(child.pid), psutil.Process(launcher.template.pid)
    [app] = jp_serverapp.extension_manager.extension_apps["flyte_lab"]
    try:
        await app.stop_extension()  # what the server does as it stops
        assert not template.is_running() and launcher.template is None
        assert run.is_running()
    finally:
        release.touch()
        run.wait(150)  # no longer watched by the launcher: psutil polls
    assert record(run_id)["status"] == "succeeded"


def test_a_template_exits_when_its_server_dies(tmp_path: Path, home: Path) -> None:
    """A server killed with SIGKILL runs no stop hook: its template sees the socket close and exits."""
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom flyte_lab.server.forked_launches import LaunchTemplate\n"
         "print(LaunchTemplate().pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert server.stdout is not None
        template = psutil.Process(int(server.stdout.readline()))
        server.kill()
        server.wait()
        template.wait(90)  # its imports first, then the EOF
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    wait_no_home_processes(home, 10)


HOLDER = """
import sys
from flyte_lab.server.forked_launches import LaunchTemplate
template = LaunchTemplate()
template.wait_ready()
try:
    open(f"/proc/{template.pid}/environ", "rb").read()
    print("readable")
except PermissionError:
    print("hidden")
finally:
    template.close()
"""

CONTROL = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "print(flush=True); input()"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
child.stdout.readline()  # it runs: its environment is the one it was started with
print(b"flyte-lab-secret-" in open(f"/proc/{child.pid}/environ", "rb").read())
child.communicate(b"\\n")
"""


def test_the_template_holding_the_servers_secrets_is_not_readable_by_its_user(ordinary_user: OrdinaryUser) -> None:
    """The template has the Jupyter server's environment, where the runs' `--env K=$NAME` secrets come from:
    another process of the same user cannot read it through /proc (the control: a process that did not hide
    its memory is readable)."""
    secret = {"FLYTE_TEST_SECRET": "flyte-lab-secret-" + os.urandom(8).hex()}
    held = ordinary_user.run([str(ordinary_user.python), "-c", HOLDER], timeout=180, **secret)
    assert held.stdout.strip() == "hidden", held.stderr[-2000:]
    control = ordinary_user.run([str(ordinary_user.python), "-c", CONTROL], **secret)
    assert control.stdout.strip() == "True", control.stderr


async def test_a_run_from_lab_gives_the_same_outputs_on_the_shared_executor_and_a_private_cluster(
        root: Path, fetch: Any, launcher: Any, home: Path, no_leftovers: None) -> None:
    write_notebook(root / "two.ipynb", "n = 20",
                   "%%flyte_task double(n: int) -> x: int, xs: list[float]\nx = n * 2\nxs = [x / 3] * 3",
                   "%%flyte_task total(x: int, xs: list[float]) -> y: float\ny = x + sum(xs)")
    hashes, clusters = [], []
    for body in ({}, {"cluster": "local"}, {}):  # the default (shared) twice: cold, then warm
        response = await fetch("runs", method="POST", body={"path": "two.ipynb", "params": {"n": 21}, **body})
        assert response.code in (201, 202), response.body
        run_id = as_json(response)["run_id"]
        await launcher.wait_all()
        assert record(run_id)["status"] == "succeeded"
        with RunStore.from_env(create=False) as store:
            hashes.append({(task, name): out["content_hash"] for task in ("double", "total")
                           for name, out in store.get_outputs(run_id, task).items()})
        clusters.append(record(run_id)["cluster"])
    assert clusters == ["shared", "local", "shared"]
    assert hashes[0] == hashes[1] == hashes[2] and len(hashes[0]) == 3
