"""Every shape of ipykernel kernelspec users have gets forked task kernels, run as that kernelspec says.

Real kernelspecs on disk (one written by `python -m ipykernel install`, as users get it), real templates and
forked ipykernels driven by papermill (`run_task_attempt`), a real second venv for "another interpreter". Each
probe proves its kernel was forked (its parent is the template) and reports the interpreter, flags and
environment it runs with. A kernelspec that cannot be forked is run through the CLI: the run says why once,
and `show` keeps it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import flyte_lab
from flyte_lab.engine.attempt_records import AttemptSucceeded
from flyte_lab.engine.worker.kernels import FORK, close_pools
from flyte_lab.engine.worker.run_attempt import run_task_attempt
from tests.conftest import cli_env
from tests.test_worker_attempts import make_spec

pytestmark = pytest.mark.skipif(not FORK, reason="FLYTE_LAB_KERNEL_FORK=0: kernels are not forked")

SETUP = "%%flyte_setup\nimport os\nimport sys\nimport psutil"
PROBE = ("%%flyte_task probe() -> (pid: int, parent: str, executable: str, optimize: int, isolated: int, "
         "ignore_env: int, xoptions: str, marker: str, home_copy: str)\n"
         "pid = os.getpid()\n"
         "parent = ' '.join(psutil.Process(os.getppid()).cmdline())\n"
         "executable = sys.executable\n"
         "optimize, isolated, ignore_env = sys.flags.optimize, sys.flags.isolated, sys.flags.ignore_environment\n"
         "xoptions = repr(sorted(sys._xoptions.items()))\n"
         "marker = os.environ.get('FLYTE_LAB_SHAPE', '')\n"
         "home_copy = os.environ.get('FLYTE_LAB_SHAPE_HOME', '')\n")
MODULES = ["os", "sys", "psutil"]
WORKTREE = str(Path(flyte_lab.__file__).resolve().parent.parent)


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    close_pools()
    yield
    close_pools()


@pytest.fixture(scope="module")
def other_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second venv (no pip) that sees this flyte_lab and this venv's packages through a .pth file: what a
    kernelspec pointing at another environment runs. A .pth is read even under -I and -E, unlike PYTHONPATH."""
    root = tmp_path_factory.mktemp("other") / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(root / "bin" / "python"), "-c", ask], capture_output=True, text=True,
                             check=True).stdout.strip()
    Path(purelib, "flyte_lab_under_test.pth").write_text(f"{WORKTREE}\n{sysconfig.get_paths()['purelib']}\n")
    return root / "bin" / "python"


def kernelspec(folder: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> Path:
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    body: dict[str, Any] = {"argv": argv, "display_name": name, "language": "python"}
    if env:
        body["env"] = env
    (spec / "kernel.json").write_text(json.dumps(body))
    return spec


def launcher(python: str, *options: str) -> list[str]:
    return [python, *options, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def probe_twice(tmp_path: Path, kernel_name: str) -> list[dict[str, Any]]:
    """Two tasks of kernelspec `kernel_name`; each must have run in a kernel forked from a template."""
    seen = []
    for _ in range(2):
        spec = make_spec(tmp_path, [SETUP, PROBE], "probe", kernel_name=kernel_name, setup_modules=MODULES)
        result = run_task_attempt(spec)
        assert isinstance(result, AttemptSucceeded), result
        assert result.kernel_note is None, result.kernel_note
        seen.append({k: v["value"] for k, v in result.outputs.items()})
    assert all("kernel_template" in s["parent"] for s in seen), [s["parent"] for s in seen]
    assert seen[0]["pid"] != seen[1]["pid"]
    return seen


def test_the_kernelspec_ipykernel_install_writes_forks_with_its_interpreter_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "prefix"),
                    "--name", "installed"], check=True, capture_output=True)
    data = tmp_path / "prefix" / "share" / "jupyter"
    argv = json.loads((data / "kernels" / "installed" / "kernel.json").read_text())["argv"]
    assert "-Xfrozen_modules=off" in argv  # the shape users get (3.11+), which used to fall back to spawning
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    seen = probe_twice(tmp_path, "installed")
    assert all(s["xoptions"] == repr([("frozen_modules", "off")]) for s in seen)
    assert all(s["executable"] == argv[0] for s in seen)
    assert all(" ".join(argv[1:argv.index("-m")]) in s["parent"] for s in seen)  # the template has them too


def test_the_wheel_kernelspec_forks_with_this_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernelspec(tmp_path, "wheel", launcher("python"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    seen = probe_twice(tmp_path, "wheel")
    assert all(s["executable"] == sys.executable and s["xoptions"] == "[]" and s["optimize"] == 0 for s in seen)


def test_an_optimising_kernelspec_forks_kernels_that_optimise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernelspec(tmp_path, "optimised", launcher(sys.executable, "-O", "-X", "utf8"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    seen = probe_twice(tmp_path, "optimised")
    assert all(s["optimize"] == 1 and s["xoptions"] == repr([("utf8", True)]) for s in seen)


@pytest.mark.parametrize("options,flags", [((), ()), (("-E",), ("ignore_env",)),
                                           (("-I",), ("isolated", "ignore_env"))])  # -I implies -E
def test_a_kernelspec_of_another_venv_forks_kernels_of_that_interpreter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_venv: Path, options: tuple[str, ...],
        flags: tuple[str, ...]) -> None:
    kernelspec(tmp_path, "other", launcher(str(other_venv), *options))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    seen = probe_twice(tmp_path, "other")
    assert all(s["executable"] == str(other_venv) for s in seen)
    assert all(str(other_venv) in s["parent"] for s in seen)  # the template is that interpreter too
    for name in ("ignore_env", "isolated"):
        assert all(s[name] == (name in flags) for s in seen), (name, seen)


def test_the_kernelspec_env_reaches_the_forked_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernelspec(tmp_path, "with-env", launcher(sys.executable),
               env={"FLYTE_LAB_SHAPE": "from the kernelspec", "FLYTE_LAB_SHAPE_HOME": "${HOME}/sub"})
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    seen = probe_twice(tmp_path, "with-env")
    assert all(s["marker"] == "from the kernelspec" for s in seen)
    assert all(s["home_copy"] == f"{os.environ['HOME']}/sub" for s in seen)  # substituted as jupyter_client does


def test_a_user_kernelspec_that_shadows_the_venvs_is_followed_by_a_new_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    before = probe_twice(tmp_path, "python3")  # the venv's python3: a pool and template exist for it now
    assert all(s["marker"] == "" and s["optimize"] == 0 for s in before)
    user = tmp_path / "user-data"
    kernelspec(user, "python3", launcher(sys.executable, "-O"), env={"FLYTE_LAB_SHAPE": "user"})
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(user))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # the user's data folder before the venv's, as outside one
    assert KernelSpecManager().get_kernel_spec("python3").resource_dir == str(user / "kernels" / "python3")
    after = probe_twice(tmp_path, "python3")
    assert all(s["marker"] == "user" and s["optimize"] == 1 for s in after)
    assert all(" -O " in s["parent"] for s in after)  # forked from a new template, run as the user's kernelspec


def write_notebook(path: Path, kernel_name: str) -> Path:
    nb = new_notebook(cells=[new_code_cell("%%flyte_setup\nimport os"),
                             new_code_cell("%%flyte_task first() -> a: int\na = 1"),
                             new_code_cell("%%flyte_task second(a: int) -> b: int\nb = a + 1")])
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_kernelspec_that_cannot_fork_says_why_once_in_the_run_and_in_show(tmp_path: Path, home: Path) -> None:
    kernelspec(tmp_path / "specs", "wrapped", ["/usr/bin/env", *launcher(sys.executable)])
    env = dict(cli_env(home), JUPYTER_PATH=str(tmp_path / "specs"))
    notebook = write_notebook(tmp_path / "wrapped.ipynb", "wrapped")
    cli = [sys.executable, "-m", "flyte_lab"]
    run = subprocess.run([*cli, "run", str(notebook), "--workers", "2", "--json"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout)
    assert record["status"] == "succeeded"
    why = "kernelspec `wrapped`: each task's kernel is started as a new process, not forked"
    assert run.stderr.count(why) == 1, run.stderr  # two tasks, two workers: said once
    assert "/usr/bin/env" in run.stderr
    shown = subprocess.run([*cli, "show", record["run_id"], "--json"], env=env, capture_output=True, text=True,
                           check=True)
    notes = json.loads(shown.stdout)["notes"]
    assert len(notes) == 1 and notes[0].startswith(why) and "/usr/bin/env" in notes[0]
    text = subprocess.run([*cli, "show", record["run_id"]], env=dict(env, COLUMNS="400"), capture_output=True,
                          text=True, check=True).stdout
    assert f"note: {why}" in text


def test_a_task_that_cannot_fork_on_a_worker_that_differs_reports_both_notes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 20: the environment's differences (allowed by --allow-env-mismatch) were dropped whenever
    the kernelspec's own note (kernels started, not forked) was there too. One note per line, both kept."""
    kernelspec(tmp_path / "specs", "wrapped", ["/usr/bin/env", *launcher(sys.executable)])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "specs"))
    spec = make_spec(tmp_path, ["%%flyte_task one() -> a: int\na = 1"], "one", kernel_name="wrapped",
                     expected_env={"versions": {"psutil": "0.0.1"}, "allow": True})
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptSucceeded), result
    notes = (result.kernel_note or "").splitlines()
    assert len(notes) == 2, notes
    assert notes[0].startswith("kernelspec `wrapped`: each task's kernel is started as a new process")
    assert notes[1].startswith("environment differs (--allow-env-mismatch): psutil: 0.0.1 here, "), notes[1]
