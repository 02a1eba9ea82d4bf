"""Where a task's CPU goes, on the warm shared executor: CPU seconds per task (or map element) by process kind.

    python benchmarks/bench_cpu_split.py [--tasks 100] [--elements 200]

Two workloads, each run once to start the executor and its templates (untimed), then once measured, with a
kernelspec installed as users install one (`python -m ipykernel install`): N trivial tasks, and an N-element
map-over of a trivial task. CPU is read from /proc (user + system) before and after the measured run for each
process of the run's FLYTE_LAB_HOME and each kernel template, with the children each has reaped (a template
reaps its forked kernels; the warm driver template its drivers), plus the `flyte-lab` process itself. Printed:
wall time, the rate, and per process kind the CPU per task; the baseline is the run's own total, so each row is
also its share. The load average is printed with the numbers: CPU time, unlike wall time, barely moves with load.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
from bench_peers import install_kernelspec
from nbformat.v4 import new_code_cell, new_notebook

FLYTE_LAB = [sys.executable, "-m", "flyte_lab.cli.main"]  # `flyte-lab`: `__main__` is its `entry()`


def notebook(path: Path, kind: str, n: int, kernel: str) -> Path:
    if kind == "map":
        cells = [f"%%flyte_task make() -> xs: list[int]\nxs = list(range({n}))",
                 "%%flyte_task square(xs: int) -> ys: int --map-over xs\nys = xs * xs",
                 "%%flyte_task total(ys: list[int]) -> t: int\nt = sum(ys)"]
    else:
        cells = [f"%%flyte_task t{i}() -> o{i}: int\no{i} = {i}" for i in range(n)]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(nb, path)
    return path


def kind_of(cmdline: str) -> str:
    for marker, kind in (("executor_process", "executor (scheduler, workers, papermill)"),
                         ("warm_driver", "warm driver template (+ its drivers)"),
                         ("kernel_template", "kernel template (+ its forked kernels)")):
        if marker in cmdline:
            return kind
    return "other"


def cpu_by_process(home: Path) -> dict[int, tuple[str, float]]:
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) not in cmdline and "kernel_template" not in cmdline:
            continue
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        found[proc.pid] = (kind_of(cmdline), t.user + t.system + t.children_user + t.children_system)
    return found


def measure(kind: str, n: int, folder: Path, env: dict[str, str], kernel: str) -> None:
    home = folder / kind / "home"
    home.mkdir(parents=True)
    run_env = dict(env, FLYTE_LAB_HOME=str(home))
    argv = [*FLYTE_LAB, "run", str(notebook(folder / kind / "nb.ipynb", kind, n, kernel)), "--workers", "2",
            "--json"]
    subprocess.run(argv, env=run_env, capture_output=True, check=True)  # starts the executor: untimed
    deadline = time.monotonic() + 120  # and its warm driver template, which a `flyte-lab run` is handed to
    while not list(home.glob("executors/*/driver.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    before, own = cpu_by_process(home), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(argv, env=run_env, capture_output=True, check=True)
    wall = time.monotonic() - started
    time.sleep(1)
    after, own_after = cpu_by_process(home), resource.getrusage(resource.RUSAGE_CHILDREN)
    split: dict[str, float] = {"flyte-lab process": (own_after.ru_utime + own_after.ru_stime)
                               - (own.ru_utime + own.ru_stime)}
    for pid, (what, cpu) in after.items():
        split[what] = split.get(what, 0.0) + cpu - before.get(pid, (what, 0.0))[1]
    subprocess.run([*FLYTE_LAB, "executor", "stop"], env=run_env, capture_output=True, check=False)
    total = sum(split.values())
    unit = "map elements" if kind == "map" else "trivial tasks"
    print(f"\n{n} {unit}: {wall:.1f} s, {n / wall:.1f}/s; {1000 * total / n:.0f} ms of CPU per task")
    print("| process | ms of CPU per task | share |\n| --- | ---: | ---: |")
    for what, cpu in sorted(split.items(), key=lambda kv: -kv[1]):
        if cpu > 0.005:
            print(f"| {what} | {1000 * cpu / n:.1f} | {cpu / total:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--elements", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cpu_split_") as tmp:
        folder = Path(tmp)
        spec = install_kernelspec(folder / "prefix")
        env = dict(os.environ, JUPYTER_PATH=os.pathsep.join(filter(None, [spec.jupyter_path,
                                                                        os.environ.get("JUPYTER_PATH")])))
        env.pop("FLYTE_LAB_DB_URL", None)
        env.pop("FLYTE_LAB_ARTIFACTS", None)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; kernelspec: {spec.name} "
              "(python -m ipykernel install)")
        measure("trivial", args.tasks, folder, env, spec.name)
        measure("map", args.elements, folder, env, spec.name)


if __name__ == "__main__":
    main()
