"""`%flyte_run` keeps its local cluster and kernel pools for the kernel's life (real kernels via nbclient, real
Dask, real forked kernels): later runs reuse them, each run keeps its own secrets and cancel, and nothing is left
once the kernel shuts down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.engine.api import run_notebook
from flyte_lab.engine.worker import kernels
from tests.process_helpers import CANCEL_BOUND_S, open_store, wait_no_home_processes
from tests.test_widget import errors_of, execute

pytestmark = pytest.mark.cluster

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# what a run saw, printed as one JSON line: its status, each task's kernel's parent (the kernel template the pool
# forked it from) and the kept cluster's scheduler
REPORT = ("import json\nfrom flyte_lab.engine.kept_cluster import kept_scheduler\n"
          "print(json.dumps({{'run_id': {run}['run_id'], 'status': {run}['status'], 'scheduler': kept_scheduler()}}))")


def two_tasks(path: Path) -> Path:
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os"),
        new_code_cell("%%flyte_task a(n: int = 20) -> x: int, pa: int\nx = n * 2\npa = os.getppid()"),
        new_code_cell("%%flyte_task b(x: int) -> y: int, pb: int\ny = x + 2\npb = os.getppid()"),
    ], metadata={"kernelspec": KERNELSPEC}), path)
    return path


def run_cell(path: Path) -> Any:
    return new_code_cell(f"run = %flyte_run {path} --background\nrun.wait()\n" + REPORT.format(run="run.record"))


def reports(nb: Any, cells: list[int]) -> list[dict[str, Any]]:
    return [json.loads(nb.cells[i].outputs[-1]["text"].strip().splitlines()[-1]) for i in cells]


def outputs(home: Path, run_id: str, task: str) -> dict[str, Any]:
    with open_store(home) as store:
        return {name: out.get("value") for name, out in store.get_outputs(run_id, task).items()}


def hashes(home: Path, run_id: str) -> dict[str, Any]:
    with open_store(home) as store:
        return {(t, n): o["content_hash"] for t in ("a", "b") for n, o in store.get_outputs(run_id, t).items()
                if not n.startswith("p")}


def test_second_run_reuses_the_kept_cluster_and_nothing_is_left_after_shutdown(home: Path, tmp_path: Path) -> None:
    path = two_tasks(tmp_path / "two.ipynb")
    nb = execute(new_notebook(cells=[new_code_cell("%load_ext flyte_lab"), run_cell(path), run_cell(path),
                                     new_code_cell("from flyte_lab.engine.worker import kernels\n"
                                                   "print(json.dumps([p._template.proc.pid for p in "
                                                   "kernels._pools.values() if p._template]))")]), tmp_path)
    assert errors_of(nb) == []
    first, second = reports(nb, [1, 2])
    assert first["status"] == second["status"] == "succeeded"
    # each task's kernel forked by the same template, on the same scheduler: nothing was started again
    parents = [outputs(home, r["run_id"], t)[f"p{t}"] for r in (first, second) for t in ("a", "b")]
    assert len(set(parents)) == 1, parents
    assert first["scheduler"] and first["scheduler"] == second["scheduler"]
    assert outputs(home, second["run_id"], "b")["y"] == 42
    templates = json.loads(nb.cells[3].outputs[-1]["text"])
    assert templates == parents[:1]
    # the kernel shut down: the template, its kernels and every pooled one with it
    wait_no_home_processes(home, timeout=30)
    assert not psutil.pid_exists(parents[0]) or psutil.Process(parents[0]).status() == psutil.STATUS_ZOMBIE
    # and a run with nothing kept (the CLI's way) computes the same values, byte for byte
    plain = run_notebook(str(path), {}, cluster="local")
    assert plain["status"] == "succeeded"
    assert hashes(home, plain["run_id"]) == hashes(home, first["run_id"]) == hashes(home, second["run_id"])


def test_a_later_run_with_other_secrets_gets_kernels_without_them(home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_TEST_KEPT_TOKEN", "sekrit-kept")  # the notebook's kernel has it, and so its pool
    plain = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os"),
        new_code_cell("%%flyte_task look() -> seen: str\nseen = os.environ.get('FLYTE_TEST_KEPT_TOKEN', 'absent')"),
    ], metadata={"kernelspec": KERNELSPEC}), plain)
    secret = tmp_path / "secret.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os"),
        new_code_cell("%%flyte_task hold() -> got: str --env K=$FLYTE_TEST_KEPT_TOKEN\n"
                      "got = os.environ.get('K', 'absent')"),
        new_code_cell("%%flyte_task look() -> seen: str\n"
                      "seen = os.environ.get('FLYTE_TEST_KEPT_TOKEN', 'absent') + ',' + os.environ.get('K', 'absent')"),
    ], metadata={"kernelspec": KERNELSPEC}), secret)
    nb = execute(new_notebook(cells=[new_code_cell("%load_ext flyte_lab"), run_cell(plain), run_cell(secret),
                                     run_cell(plain)]), tmp_path)
    assert errors_of(nb) == []
    first, second, third = reports(nb, [1, 2, 3])
    assert first["status"] == second["status"] == third["status"] == "succeeded"
    assert first["scheduler"] == second["scheduler"] == third["scheduler"]
    # nobody declared it a secret: every kernel sees it, as without a kept cluster
    assert outputs(home, first["run_id"], "look")["seen"] == "sekrit-kept"
    # the run that does: only its own task, although kernels without that scrub were kept ready
    assert outputs(home, second["run_id"], "hold")["got"] == "sekrit-kept"
    assert outputs(home, second["run_id"], "look")["seen"] == "absent,absent"
    assert outputs(home, third["run_id"], "look")["seen"] == "sekrit-kept"
    wait_no_home_processes(home, timeout=30)


def test_cancel_of_a_second_run_works_and_the_next_run_reuses_the_cluster(home: Path, tmp_path: Path) -> None:
    path = two_tasks(tmp_path / "two.ipynb")
    blocking = tmp_path / "blocking.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os\nimport time"),
        new_code_cell("%%flyte_task block(flag: str = 'never-created') -> done: bool\n"
                      "while not os.path.exists(flag):  # waits until the run is cancelled\n"
                      "    time.sleep(0.05)\ndone = True"),
    ], metadata={"kernelspec": KERNELSPEC}), blocking)
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        run_cell(path),
        new_code_cell(f"run = %flyte_run {blocking} --background\n"
                      "import time\nfrom flyte_lab import get_run\ndeadline = time.monotonic() + 120\n"
                      "while not (run.run_id and get_run(run.run_id)['tasks']['block']['status'] == 'running'):\n"
                      "    assert time.monotonic() < deadline and not run.finished.is_set()\n"
                      "    time.sleep(0.05)  # polling the store for a condition\n"
                      "clicked = time.monotonic()\n"
                      "run.widget.cancel.click()  # what the Cancel button does\n"
                      "run.wait()\ntook = time.monotonic() - clicked\n"
                      + REPORT.format(run="dict(run.record, status=f\"{run.record['status']} {took}\")")),
        run_cell(path),
    ]), tmp_path)
    assert errors_of(nb) == []
    first, cancelled, third = reports(nb, [1, 2, 3])
    status, took = cancelled["status"].split()
    assert status == "cancelled" and float(took) <= CANCEL_BOUND_S, took
    assert third["status"] == "succeeded" and outputs(home, third["run_id"], "b")["y"] == 42
    assert first["scheduler"] == cancelled["scheduler"] == third["scheduler"]
    wait_no_home_processes(home, timeout=30)


def test_a_kept_pool_is_closed_when_its_kernels_would_differ(home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Other setup modules, another environment or folder in the kernel: the next run gets a new template."""
    monkeypatch.chdir(tmp_path)
    try:
        kept = kernels.pool("python3", ["json"], scrub=())
        assert kept is not None and kept.forking
        kernels.close_unfit("python3", ["json"])  # the same: kept
        assert kernels.pool("python3", ["json"]) is kept
        kernels.close_unfit("python3", ["json", "csv"])  # the setup imports another module
        fresh = kernels.pool("python3", ["json", "csv"])
        assert fresh is not kept and fresh is not None
        monkeypatch.setenv("FLYTE_TEST_KEPT_CHANGED", "1")  # e.g. `%env` in the notebook's kernel
        kernels.close_unfit("python3", ["json", "csv"])
        again = kernels.pool("python3", ["json", "csv"])
        assert again is not fresh and again is not None
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")  # `%cd`
        kernels.close_unfit("python3", ["json", "csv"])
        assert kernels.pool("python3", ["json", "csv"]) is not again
    finally:
        kernels.close_pools()
    wait_no_home_processes(home, timeout=30)
