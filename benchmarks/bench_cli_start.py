"""Whole `flyte-lab` processes (the read-only commands, and a run of two trivial tasks), as ratios to bare
interpreters.

    python benchmarks/bench_cli_start.py [--repeat 7]

Each command is timed as a user runs it (interpreter start to exit, `python -m flyte_lab.cli.main ...`): wall
and CPU time (user + system, its reaped descendants included: a run's kernels), the median of `--repeat` runs,
interleaved with the floors so background load hits all alike. Floors: `python -c pass` and `import nbformat`
(what reading any notebook costs; without jsonschema's RFC 3987 grammar, ~2 CPU-s at import here, which no
flyte-lab process compiles: `flyte_lab/import_costs.py`). One small run is made first (not timed) so `runs`
and `show` have something to print. The load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

CLI = [sys.executable, "-m", "flyte_lab.cli.main"]


def make_notebook(path: Path) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell("n = 3")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                new_code_cell("%%flyte_task make(n: int) -> numbers: list[int]\nnumbers = list(range(n))"),
                new_code_cell("%%flyte_task total(numbers: list[int]) -> result: int\nresult = sum(numbers)")]
    nbformat.write(nb, path)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process; its CPU time (user + system) is what load barely changes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FLYTE_LAB_HOME": str(Path(tmp) / "home")}
        nb = Path(tmp) / "small.ipynb"
        make_notebook(nb)
        made = subprocess.run([*CLI, "run", str(nb), "--workers", "1", "--json"], env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if made.returncode != 0:
            raise SystemExit(f"the setup run failed:\n{made.stderr[-2000:]}")
        run_id = json.loads(made.stdout)["run_id"]
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import nbformat'": [sys.executable, "-c",
                                            "import sys; sys.modules['rfc3987_syntax'] = None; import nbformat"],
            "flyte-lab --help": [*CLI, "--help"],
            "flyte-lab validate NB": [*CLI, "validate", str(nb)],
            "flyte-lab runs": [*CLI, "runs"],
            "flyte-lab show RUN": [*CLI, "show", run_id],
            "flyte-lab run NB (2 tasks)": [*CLI, "run", str(nb), "--workers", "1", "--no-cache"],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        try:
            for _ in range(args.repeat):
                for name, argv in cases.items():
                    times[name].append(timed(argv, env))
        finally:  # the run's shared executor, kept between runs by design
            subprocess.run([*CLI, "executor", "stop"], env=env, capture_output=True, check=False)
    wall = {name: statistics.median(w for w, _ in values) for name, values in times.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in times.items()}
    floor = "python -c 'import nbformat'"
    print(f"median of {args.repeat}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratios = f"{'/ bare':>7s} {'/ nbformat':>10s}"
    print(f"{'':30s} {'wall ms':>8s} {ratios} {'CPU ms':>7s} {ratios}")
    for name in cases:
        print(f"{name:30s} {wall[name] * 1000:8.0f} {wall[name] / wall['python -c pass']:6.2f}x "
              f"{wall[name] / wall[floor]:9.2f}x {cpu[name] * 1000:7.0f} {cpu[name] / cpu['python -c pass']:6.2f}x "
              f"{cpu[name] / cpu[floor]:9.2f}x")


if __name__ == "__main__":
    main()
