"""A second `%flyte_run` in one kernel, against papermill running the same cells top to bottom.

    python benchmarks/bench_rerun.py [--repeat 5] [--kernelspec installed|shipped]

One notebook kernel (nbclient, driven cell by cell) runs `%flyte_run` on a notebook of two trivial tasks: once
untimed (the kernel's first run starts its cluster and kernel template; its time is printed), then `--repeat`
times, each timed from the client (cell sent to cell done). The baseline, measured in the same run and
interleaved with those: `python -m papermill` running the equivalent plain notebook top to bottom, a whole
process. Both run in the same kernelspec: `installed` (the default) is made by `python -m ipykernel install`,
as users get one (bench_peers.py's `install_kernelspec`); `shipped` is ipykernel's wheel's `python3`.
Every run's result is checked. Prints the medians, the ratio (target of issue 16: <= 0.15x) and the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_peers import Kernelspec, install_kernelspec
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from peer_inputs import write_flyte, write_plain
from workloads import Task, Var, Workload

from flyte_lab.store import RunStore

TARGET = 0.15
TWO = Workload(name="two", title="two trivial tasks", setup="", result="result", expected=42, tasks=(
    Task("first", (), (Var("x", "int"),), "x = 20"),
    Task("second", (Var("x", "int"),), (Var("result", "int"),), "result = x + 22"),
))


def papermill_once(folder: Path, env: dict[str, str], repeat: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "papermill", "plain.ipynb", f"out-{repeat}.ipynb",
                           "--no-progress-bar"], cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"papermill failed: {proc.stderr[-600:]}")
    return elapsed


def flyte_run_once(client: NotebookClient, index: int, flyte: Path) -> float:
    cell = new_code_cell(f"%flyte_run {flyte}")
    client.nb.cells.append(cell)
    start = time.perf_counter()
    client.execute_cell(cell, index)
    elapsed = time.perf_counter() - start
    errors = [o for o in cell.outputs if o.get("output_type") == "error" or o.get("name") == "stderr"]
    if errors:
        sys.exit(f"%flyte_run failed: {errors}")
    return elapsed


def check_runs(home: Path, count: int) -> None:
    """Every `%flyte_run` succeeded with the expected result (read from the run store)."""
    with RunStore.from_env(str(home), create=False) as store:
        runs = store.list_runs(limit=count + 1)
        assert len(runs) == count, f"{len(runs)} runs recorded, expected {count}"
        for run in runs:
            assert run["status"] == "succeeded", run
            TWO.check(store.get_outputs(run["run_id"], "second")["result"]["value"])


def measure(repeat: int, kernelspec: str) -> tuple[list[float], float, list[float]]:
    """(papermill times, the first %flyte_run, the later %flyte_run times), interleaved, checked."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = install_kernelspec(folder / "jupyter") if kernelspec == "installed" else Kernelspec()
        home = folder / "home"
        env = dict(os.environ, TMPDIR=str(folder), FLYTE_LAB_HOME=str(home))
        for name in ("FLYTE_LAB_DB_URL", "FLYTE_LAB_ARTIFACTS"):  # a private store, in the folder
            env.pop(name, None)
        if spec.jupyter_path:
            env["JUPYTER_PATH"] = os.pathsep.join(p for p in (spec.jupyter_path, env.get("JUPYTER_PATH")) if p)
        write_flyte(TWO, folder / "flyte.ipynb", spec.name)
        write_plain(TWO, folder / "plain.ipynb", spec.name)
        saved = dict(os.environ)
        os.environ.update(env)  # the kernel nbclient starts inherits them
        try:
            nb = new_notebook(cells=[new_code_cell("%load_ext flyte_lab")])
            client = NotebookClient(nb, timeout=300, kernel_name=spec.name, resources={"metadata": {"path": tmp}})
            papermill, again = [], []
            with client.setup_kernel():
                client.execute_cell(nb.cells[0], 0)
                first = flyte_run_once(client, 1, folder / "flyte.ipynb")
                for i in range(repeat):
                    papermill.append(papermill_once(folder, env, i))
                    again.append(flyte_run_once(client, 2 + i, folder / "flyte.ipynb"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        check_runs(home, repeat + 1)
    return papermill, first, again


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kernelspec", choices=("installed", "shipped"), default="installed")
    args = parser.parse_args()
    papermill, first, again = measure(args.repeat, args.kernelspec)
    spec_name = args.kernelspec
    pm, rerun = statistics.median(papermill), statistics.median(again)
    ratio = rerun / pm
    print(f"kernelspec: {spec_name}; repeats: {args.repeat}")
    print(f"papermill top to bottom (whole process):  {pm * 1000:8.0f} ms")
    print(f"first %flyte_run in the kernel:           {first * 1000:8.0f} ms")
    print(f"later %flyte_run in the same kernel:      {rerun * 1000:8.0f} ms   (each: "
          + ", ".join(f"{t * 1000:.0f}" for t in again) + ")")
    print(f"ratio later %flyte_run / papermill:       {ratio:8.2f}x  (target <= {TARGET}x)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
