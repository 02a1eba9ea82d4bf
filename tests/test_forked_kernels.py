"""Kernels forked from a template: still one fresh, isolated kernel per task.

Real template processes, real forked ipykernels driven by real papermill (through `run_task_attempt`), no Dask.
Each test proves the kernel really was forked (its parent is the template), so a silent fall-back to normal
start-up cannot make them pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from flyte_lab.engine.attempt_records import AttemptSucceeded
from flyte_lab.engine.worker.kernels import FORK, close_pools, pool
from flyte_lab.engine.worker.run_attempt import run_task_attempt
from tests.test_worker_attempts import make_spec, wait_for

pytestmark = pytest.mark.skipif(not FORK, reason="FLYTE_LAB_KERNEL_FORK=0: kernels are not forked")

PROBE = ("%%flyte_task probe() -> (pid: int, parent: str, rand: float, marked: bool, seen: bool)\n"
         "import json, random\n"
         "pid = os.getpid()\n"
         "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\n"
         "rand = random.random()\n"
         "marked = hasattr(json, 'flyte_marker')\n"
         "seen = 'leftover' in globals()\n"
         "json.flyte_marker = 1  # module state a later task must not see\n"
         "leftover = 1\n")
SETUP = "%%flyte_setup\nimport os\nimport psutil"


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    close_pools()
    yield
    close_pools()


def run_probe(tmp_path: Path, cells: list[str] | None = None, **over: Any) -> dict[str, Any]:
    result = run_task_attempt(make_spec(tmp_path, cells or [SETUP, PROBE], "probe", **over))
    assert isinstance(result, AttemptSucceeded), result
    return {k: v["value"] for k, v in result.outputs.items()}


def test_every_task_gets_a_fresh_forked_kernel_with_nothing_carried_over(tmp_path: Path) -> None:
    seen = [run_probe(tmp_path) for _ in range(4)]
    assert all("kernel_template" in s["parent"] for s in seen), [s["parent"] for s in seen]
    assert len({s["pid"] for s in seen}) == 4
    assert not any(s["marked"] or s["seen"] for s in seen)  # no module attribute, no global from the task before
    assert len({s["rand"] for s in seen}) == 4  # the RNG copied by fork is reseeded in each kernel


def test_numpy_in_the_template_is_reseeded_and_its_blas_threads_survive_the_fork(tmp_path: Path) -> None:
    cells = ["%%flyte_setup\nimport os\nimport numpy as np\nimport psutil",
             "%%flyte_task probe() -> (parent: str, draw: float, total: float)\n"
             "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\n"
             "draw = float(np.random.rand())\n"
             "m = np.ones((300, 300))\n"
             "total = float((m @ m).sum())  # BLAS after fork: would hang if its thread pool were copied half-made"]
    first = run_probe(tmp_path, cells, setup_modules=["os", "numpy", "psutil"])
    second = run_probe(tmp_path, cells, setup_modules=["os", "numpy", "psutil"])
    assert "kernel_template" in first["parent"] and "kernel_template" in second["parent"]
    assert first["total"] == second["total"] == 300.0 ** 3
    assert first["draw"] != second["draw"]


def counting_module(folder: Path, name: str, body: str = "") -> None:
    """A module that appends the importing process's pid to a file each time it is imported."""
    record = f"with open({str(folder / (name + '.imports'))!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
    (folder / f"{name}.py").write_text("import os\n" + record + body + "\n")


def test_setup_imports_are_paid_once_per_worker_not_once_per_task(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    counting_module(tmp_path, "heavy_setup")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    cells = [SETUP + "\nimport heavy_setup", PROBE]
    results = [run_probe(tmp_path, cells, setup_modules=["os", "psutil", "heavy_setup"]) for _ in range(3)]
    imports = (tmp_path / "heavy_setup.imports").read_text().split()
    assert len(imports) == 1, imports  # imported by the template, then in memory in every fork
    template = psutil.Process(int(imports[0]))
    assert "kernel_template" in " ".join(template.cmdline())
    assert all(str(template.pid) not in str(r["pid"]) for r in results)


def test_a_setup_import_that_starts_a_thread_is_left_to_each_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    counting_module(tmp_path, "threaded_setup",
                    "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    cells = [SETUP + "\nimport threaded_setup", PROBE]
    modules = ["os", "psutil", "threaded_setup"]
    with caplog.at_level("WARNING", logger="flyte_lab.kernels"):
        results = [run_probe(tmp_path, cells, setup_modules=modules) for _ in range(2)]
    assert all("kernel_template" in r["parent"] for r in results)  # still forked, from a template without it
    imports = (tmp_path / "threaded_setup.imports").read_text().split()
    # the first template imported it and was retired as unsafe; each task's kernel imported it itself
    assert {str(r["pid"]) for r in results} <= set(imports)
    assert any("threaded_setup" in r.message and "thread" in r.message for r in caplog.records)


def kernel_config(folder: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """An IPython profile whose ipython_kernel_config.py holds `text`, for every kernel started from here on."""
    profile = folder / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(text + "\n")
    monkeypatch.setenv("IPYTHONDIR", str(folder / "ipython"))


def test_forks_are_configured_like_started_kernels_from_config_read_once(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # the template reads the command line and the profile's config files once; every fork must still get them
    kernel_config(tmp_path, monkeypatch, "c.IPKernelApp.exec_lines = ['from_config = 42']")
    cells = [SETUP, "%%flyte_task probe() -> (parent: str, pid: int, configured: int, history: bool, conn: str, "
                    "threads: str, linked: bool)\n"
                    "import threading\n"
                    "ip = get_ipython()\n"
                    "linked = ip.kernel is not None and ip.kernel.shell is ip and ip.parent is ip.kernel\n"
                    "threads = ','.join(t.name for t in threading.enumerate())\n"
                    "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\n"
                    "pid = os.getpid()\n"
                    "configured = globals()['from_config']\n"
                    "history = get_ipython().history_manager.enabled\n"
                    "from ipykernel.connect import get_connection_file\n"
                    "conn = get_connection_file()"]
    seen = [run_probe(tmp_path, cells) for _ in range(3)]
    assert all("kernel_template" in s["parent"] for s in seen)
    assert [s["configured"] for s in seen] == [42, 42, 42]  # the profile's config file, read by the template
    assert not any(s["history"] for s in seen)  # the task kernels' own arguments (no history database)
    assert len({s["conn"] for s in seen}) == 3 and len({s["pid"] for s in seen}) == 3  # each its own kernel
    # the shell the template built belongs to each fork's own kernel
    assert all(s["linked"] for s in seen), seen
    # the worker watches the process, not a heartbeat: none is started per task
    assert all("Shell" in s["threads"] and "Heartbeat" not in s["threads"] for s in seen), seen


def test_a_configured_kernel_class_builds_its_own_shell_in_each_fork(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # the template pre-builds ipykernel's own shell only: a kernel class configured with another shell gets it
    (tmp_path / "own_shell.py").write_text("from ipykernel.ipkernel import IPythonKernel\n"
                                           "from ipykernel.zmqshell import ZMQInteractiveShell\n"
                                           "from traitlets import Type\n"
                                           "class OwnShell(ZMQInteractiveShell):\n    pass\n"
                                           "class OwnKernel(IPythonKernel):\n    shell_class = Type(OwnShell)\n")
    kernel_config(tmp_path, monkeypatch, "c.IPKernelApp.kernel_class = 'own_shell.OwnKernel'")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    cells = [SETUP, "%%flyte_task probe() -> (parent: str, shell: str, linked: bool)\n"
                    "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\n"
                    "ip = get_ipython()\n"
                    "shell = type(ip).__name__\n"
                    "linked = ip.kernel is not None and ip.kernel.shell is ip"]
    seen = [run_probe(tmp_path, cells) for _ in range(2)]
    assert all("kernel_template" in s["parent"] for s in seen)
    assert [(s["shell"], s["linked"]) for s in seen] == [("OwnShell", True)] * 2


def test_a_task_with_its_own_env_gets_a_kernel_started_with_it_not_a_fork(tmp_path: Path) -> None:
    cells = [SETUP, "%%flyte_task probe() -> (parent: str, token: str)\n"
                    "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\ntoken = os.environ['TOKEN']"]
    own = run_probe(tmp_path, cells, env={"TOKEN": "x"}, scrub=["TOKEN"])
    assert own["token"] == "x" and "kernel_template" not in own["parent"]


def test_the_template_and_its_kernels_end_with_the_worker_process(tmp_path: Path) -> None:
    """SIGKILL the process that owns a pool: its template sees EOF and kills the kernels it forked."""
    script = textwrap.dedent("""\
        import json, sys, time
        from flyte_lab.engine.worker.kernels import pool
        p = pool("python3")
        deadline = time.time() + 60
        while p.live() < 1 and time.time() < deadline:
            time.sleep(0.05)
        print(json.dumps([k.proc.pid for k in p._ready]), flush=True)
        time.sleep(600)
        """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert owner.stdout is not None
        kernels = json.loads(owner.stdout.readline())
        assert kernels
        templates = [c for c in psutil.Process(owner.pid).children() if "kernel_template" in " ".join(c.cmdline())]
        assert len(templates) == 1
        watched = [psutil.Process(pid) for pid in kernels] + templates
        assert all(p.ppid() == templates[0].pid for p in watched[:-1])
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        _gone, alive = psutil.wait_procs(watched, timeout=20)
        assert not alive, alive
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_the_template_refuses_to_fork_when_a_thread_is_running() -> None:
    code = ("import threading, time\n"
            "from flyte_lab.engine.worker.kernel_template import unsafe_reason\n"
            "assert unsafe_reason() is None, unsafe_reason()\n"
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "print(unsafe_reason())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "Python threads are running" in out.stdout


def test_closing_the_pools_ends_templates_and_forks(tmp_path: Path) -> None:
    python3 = pool("python3")
    assert python3 is not None
    wait_for(lambda: python3.live() >= 1, 60, "a forked kernel in the pool")
    children = psutil.Process().children(recursive=True)
    assert any("kernel_template" in " ".join(c.cmdline()) for c in children)
    close_pools()
    time.sleep(0.2)
    left = [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
            and "kernel_template" in " ".join(c.cmdline())]
    assert left == []


def test_a_flyte_lab_folder_in_the_working_directory_does_not_shadow_the_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = tmp_path / "cwd" / "flyte_lab"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing copy was imported')\n")
    monkeypatch.chdir(tmp_path / "cwd")
    assert "kernel_template" in run_probe(tmp_path)["parent"]


def test_a_pool_that_runs_dry_grows_to_meet_demand_but_stays_bounded() -> None:
    from flyte_lab.engine.worker.kernels import MAX_POOL, _kill

    python3 = pool("python3")
    assert python3 is not None
    start = python3.size
    taken = []
    try:
        for _ in range(MAX_POOL + 2):  # faster than the pool refills: every take finds it empty
            kernel = python3.take((), wait_s=60)
            assert kernel is not None and kernel.forked
            taken.append(kernel)
        assert start < python3.size <= MAX_POOL
        wait_for(lambda: python3.live() == python3.size, 60, "the grown pool to fill")
    finally:
        for kernel in taken:
            _kill(kernel)


def test_a_pooled_kernel_that_dies_is_replaced() -> None:
    python3 = pool("python3")
    assert python3 is not None
    wait_for(lambda: python3.live() == python3.size, 60, "a full pool")
    victim = python3._ready[0].proc
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    python3._wake.set()  # as a take would; otherwise the fill thread looks again within 5 s
    wait_for(lambda: python3.live() == python3.size and all(p.proc.pid != victim.pid for p in python3._ready),
             60, "the dead kernel replaced")
