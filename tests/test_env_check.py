"""Remote workers checked against the driver's environment: two `dask worker` processes on 127.0.0.1, one of
which imports another version of a package the notebook's setup cell imports (the same small package installed
at two versions in two folders, each first on its process's PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import CLI, cli_env
from tests.process_helpers import DASK, accepts, free_port, only_run_id, procs, spawn, wait_for, write_notebook

pytestmark = pytest.mark.cluster

__all__ = ["procs"]  # a fixture, used by name

PACKAGE = "flytecheckpkg"


def install_version(folder: Path, version: str) -> Path:
    """`PACKAGE` at `version` in `folder`, as pip lays it out: the module and its dist-info."""
    (folder / PACKAGE).mkdir(parents=True)
    (folder / PACKAGE / "__init__.py").write_text(f"VERSION = {version!r}\n")
    info = folder / f"{PACKAGE}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{PACKAGE}\n")
    return folder


def env_with(home: Path, folder: Path) -> dict[str, str]:
    env = cli_env(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


@pytest.mark.timeout(240)
def test_a_worker_with_another_package_version_refuses_the_run_unless_allowed(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    home.mkdir(parents=True)
    old, new = install_version(tmp_path / "v1", "1.0"), install_version(tmp_path / "v2", "2.0")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log")
    procs.append(scheduler)
    wait_for(lambda: accepts(port) or scheduler.poll() is not None, 30, "the Dask scheduler to listen")
    for name, folder in (("same", old), ("other", new)):
        worker = subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                                   "--no-dashboard", "--name", name], env=env_with(home, folder),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(worker)

    def two_workers() -> bool:
        from distributed import Client

        with Client(address, timeout=5) as client:
            return len(client.scheduler_info()["workers"]) == 2

    wait_for(two_workers, 60, "both workers to join", interval=0.5)
    nb = write_notebook(tmp_path / "uses_pkg.ipynb", f"%%flyte_setup\nimport {PACKAGE}",
                        f"%%flyte_task version() -> v: str\nv = {PACKAGE}.VERSION")
    driver = env_with(home, old)
    driver["FLYTE_LAB_ARTIFACTS"] = str(tmp_path / "artifacts")

    refused = subprocess.run([*CLI, "run", str(nb), "--cluster", address, "--shared-fs"], env=driver,
                             capture_output=True, text=True, timeout=90)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert "--allow-env-mismatch" in lines[0] and "Traceback" not in refused.stderr
    [line] = [x for x in lines if PACKAGE in x]
    assert "1.0 here, 2.0 on tcp://127.0.0.1:" in line
    assert not (home / "store.db").exists()  # nothing stored

    doctor = subprocess.run([*CLI, "doctor", str(nb), "--cluster", address, "--json"], env=driver,
                            capture_output=True, text=True, timeout=90)
    assert doctor.returncode == 1, doctor.stderr
    report = json.loads(doctor.stdout)
    [difference] = report["differences"]
    assert (difference["package"], difference["driver"], difference["worker"]) == (PACKAGE, "1.0", "2.0")
    assert len(difference["workers"]) == 1 and len(report["workers"]) == 2
    table = subprocess.run([*CLI, "doctor", str(nb), "--cluster", address], env=driver, capture_output=True,
                           text=True, timeout=90)
    assert PACKAGE in table.stdout and "1 difference(s)" in table.stdout

    ran = subprocess.run([*CLI, "run", str(nb), "--cluster", address, "--shared-fs", "--allow-env-mismatch",
                          "--json"], env=driver, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded"
    shown_json = subprocess.run([*CLI, "show", run["run_id"], "--json"], env=driver, capture_output=True, text=True,
                                timeout=60, check=True)
    [note] = [n for n in json.loads(shown_json.stdout)["notes"] if PACKAGE in n]
    assert note.startswith("environment differs (--allow-env-mismatch): ") and "1.0 here, 2.0 on" in note
    from flyte_lab.store import RunStore

    with RunStore.from_env(str(home)) as store:  # the structured record, kept with the launch options
        [recorded] = store.run_record(run["run_id"])["options"]["env_differences"]
    assert (recorded["package"], recorded["driver"], recorded["worker"]) == (PACKAGE, "1.0", "2.0")
    shown = subprocess.run([*CLI, "show", run["run_id"]], env=driver, capture_output=True, text=True, timeout=60)
    assert f"{PACKAGE}: 1.0 here, 2.0 on" in shown.stdout


@pytest.mark.timeout(240)
def test_a_worker_that_joins_after_the_check_checks_itself_before_it_runs_a_task(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """Every k8s worker starts with the run, after any up-front check could ask it; here a tcp:// worker with the
    other version joins mid-run and is the only one offering the GPU the second task asks for; the first task
    (--cpu 1) can only run on the worker that was checked."""
    home.mkdir(parents=True)
    old, new = install_version(tmp_path / "v1", "1.0"), install_version(tmp_path / "v2", "2.0")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs.append(spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log"))
    wait_for(lambda: accepts(port), 30, "the Dask scheduler to listen")

    def worker(name: str, folder: Path, *extra: str) -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                       "--no-nanny", "--no-dashboard", "--name", name, *extra],
                                      env=env_with(home, folder), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        return procs[-1]

    def workers(n: int) -> bool:
        from distributed import Client

        try:
            with Client(address, timeout=10) as client:
                return len(client.scheduler_info()["workers"]) == n
        except (OSError, TimeoutError):  # a loaded machine: the scheduler answers late; ask again
            return False

    worker("same", old, "--resources", "CPU=1")  # only it can take `first` (--cpu 1); no GPU yet
    wait_for(lambda: workers(1), 60, "the first worker to join", interval=0.5)
    go = tmp_path / "go"
    nb = write_notebook(tmp_path / "late.ipynb", f"%%flyte_setup\nimport {PACKAGE}",
                        f"%%flyte_task first() -> x: int --cpu 1\nimport os, time\n"
                        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.1)\nx = 1",
                        f"%%flyte_task gpu(x: int) -> v: str --gpu 1\nv = {PACKAGE}.VERSION")
    driver = env_with(home, old)
    driver["FLYTE_LAB_ARTIFACTS"] = str(tmp_path / "artifacts")
    with (tmp_path / "run.log").open("wb") as log:
        run = subprocess.Popen([*CLI, "run", str(nb), "--cluster", address, "--shared-fs", "--json"], env=driver,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    procs.append(run)
    wait_for(lambda: only_run_id(home), 60, "the run to pass the up-front check and be recorded")
    late = worker("other", new, "--resources", "GPU=1")  # joins after the check: the only place for `gpu`
    wait_for(lambda: workers(2), 60, "the late worker to join", interval=0.5)
    go.touch()
    assert run.wait(120) == 1, (tmp_path / "run.log").read_text()[-3000:]
    show = subprocess.run([*CLI, "show", only_run_id(home) or "", "--json"], env=driver, capture_output=True,
                          text=True, timeout=60, check=True)
    gpu = json.loads(show.stdout)["tasks"]["gpu"]
    assert gpu["status"] == "failed" and gpu["error"]["type"] == "EnvironmentMismatch", gpu
    assert "cannot run on worker tcp://127.0.0.1:" in gpu["error"]["message"]
    assert f"{PACKAGE}: 1.0 here, 2.0 on tcp://127.0.0.1:" in gpu["error"]["message"]
    # refused before anything started there: no kernel template, no kernel (they would import the package)
    started = [" ".join(c.cmdline()) for c in psutil.Process(late.pid).children(recursive=True)]
    assert not any("kernel_template" in c or "ipykernel" in c for c in started), started


def test_the_compared_packages_are_the_notebooks_third_party_imports(tmp_path: Path) -> None:
    from flyte_lab.engine.env_check import Difference, compared_names, differences
    from flyte_lab.graph.validate import validate_notebook

    nb = write_notebook(tmp_path / "imports.ipynb", "%%flyte_setup\nimport json\nimport numpy as np\nfrom . import x",
                        "%%flyte_task t() -> n: int\nfrom pandas.api import types\nimport os.path\nn = 1")
    names = compared_names(validate_notebook(str(nb)))
    assert names == ["python", "flyte_lab", "papermill", "ipykernel", "cloudpickle", "distributed", "numpy", "pandas"]
    found = differences({"numpy": "2.0", "python": "3.11"},
                        {"w1": {"numpy": "2.0", "python": "3.11"}, "w2": {"numpy": "1.26", "python": "3.11"},
                         "w3": {"numpy": None, "python": "3.12"}})
    assert found == [Difference("numpy", "2.0", "1.26", ("w2",)), Difference("numpy", "2.0", None, ("w3",)),
                     Difference("python", "3.11", "3.12", ("w3",))]
    assert found[1].line() == "numpy: 2.0 here, not installed on w3"
