"""A secret stays out of reach of the run's other tasks through /proc, with flyte_lab run by an ordinary user.

`proc_scan_for_secret.ipynb`: `hold_secret` (`--env TOKEN=$FLYTE_TEST_SECRET`) stays alive while `scan_proc`
reads every `/proc/PID/environ`, `/proc/PID/cmdline` and `/proc/PID/mem` its user may read. A process of the
same user started with a secret of the same shape in its environment is the scan's control: the scan must find
that one, and nothing else (not the driver, started with the secret in its environment, nor the secret task's
kernel, nor on a `tcp://` cluster the worker that received the secret with the task).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import warnings
from typing import Any

import pytest

from tests.conftest import NOTEBOOKS
from tests.ordinary_user import OrdinaryUser, ordinary_user
from tests.process_helpers import accepts, free_port, killpg, wait_for

__all__ = ["ordinary_user"]
pytestmark = pytest.mark.cluster
PREFIX = "flyte-lab-secret-"  # what the scan looks for


def _tcp_cluster(user: OrdinaryUser, started: list[subprocess.Popen[Any]]) -> list[str]:
    """A Dask scheduler and two worker processes of the user (without the secret in their environment): the
    secret reaches a worker inside its task, through the scheduler, which holds it meanwhile and is therefore
    started as the README says, with flyte_lab's preload."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    started.append(user.popen([str(user.python), "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", "127.0.0.1:0",
                               "--preload", "flyte_lab.private_process"]))
    wait_for(lambda: accepts(port), 60, "the Dask scheduler to listen")
    for i in range(2):
        started.append(user.popen([str(user.python), "-m", "distributed.cli.dask_worker", address, "--host",
                                   "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"]))

    def two_workers() -> bool:
        from distributed import Client
        from distributed.versions import VersionMismatchWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VersionMismatchWarning)  # this test's Python is not the user's
            with Client(address, timeout=5) as client:
                return len(client.scheduler_info()["workers"]) == 2

    wait_for(two_workers, 60, "both workers to join", interval=0.5)
    return ["--cluster", address, "--shared-fs"]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("cluster", ["local", "tcp"])
def test_no_other_task_reads_a_secret_through_proc(ordinary_user: OrdinaryUser, cluster: str) -> None:
    user = ordinary_user
    secret = PREFIX + secrets.token_hex(8)
    digest = hashlib.sha256(secret.encode()).hexdigest()  # the notebook compares digests: no secret in a file
    notebook = user.work / "proc_scan_for_secret.ipynb"
    shutil.copy(NOTEBOOKS / notebook.name, notebook)
    started = [user.popen(["/bin/sleep", "300"], FLCONTROL=PREFIX + "control")]
    control_pid = str(started[0].pid)  # setpriv execs sleep: same pid
    try:
        where = _tcp_cluster(user, started) if cluster == "tcp" else ["--workers", "2"]
        run = user.run([str(user.python), "-m", "flyte_lab", "run", str(notebook), *where, "--json",
                        "-p", f"marks={user.work}", "-p", f"token_sha256={digest}"],
                       timeout=300, FLYTE_TEST_SECRET=secret)
    finally:
        for proc in reversed(started):
            killpg(proc)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    shown = user.run([str(user.python), "-m", "flyte_lab", "outputs", json.loads(run.stdout)["run_id"], "--json"])
    outputs = json.loads(shown.stdout)
    assert outputs["hold_secret"] == {"token_seen": True}  # the secret task's kernel still has TOKEN
    hits = outputs["scan_proc"]["hits"]
    assert f"{control_pid} environ" in hits, f"the scan cannot read its own user's processes: {hits}"
    assert [h for h in hits if h.split()[0] != control_pid] == [], "the secret was read through /proc"


@pytest.mark.parametrize(("argv", "expected"), [
    (["/venv/bin/python", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
     ["/venv/bin/python", "-Xfrozen_modules=off", "-m", "flyte_lab.engine.worker.secret_kernel", "ipykernel_launcher",
      "-f", "{connection_file}"]),
    (["python", "-m", "ipykernel", "-f", "{connection_file}"],
     ["python", "-m", "flyte_lab.engine.worker.secret_kernel", "ipykernel", "-f", "{connection_file}"]),
    # not ipykernel started with -m: no way to hand it secrets in memory (they go in its environment)
    (["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"], None),
    (["python", "-m", "other_kernel", "-f", "{connection_file}"], None),
])
def test_which_kernel_commands_take_secrets_in_memory(argv: list[str], expected: list[str] | None) -> None:
    from flyte_lab.engine.worker.secret_kernel import command

    assert command(argv) == expected
