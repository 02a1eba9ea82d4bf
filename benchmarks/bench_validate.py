"""Validate a notebook of N tasks in chains; report the time as a ratio to `nbformat.read`.

    python benchmarks/bench_validate.py [--tasks 1000] [--repeat 5]

Both are measured in this process on the same file (median of repeats). The
target is a ratio <= 3. Scaling is checked by also timing 4x the tasks: a
linear builder gives a per-task cost ratio near 1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.graph.validate import validate_notebook


def make_notebook(path: Path, tasks: int, chain: int = 10) -> None:
    nb = new_notebook()
    nb.cells.append(new_code_cell("%%flyte_setup\nimport pandas as pd\nimport numpy as np\n"))
    for i in range(tasks):
        if i % chain == 0:
            header = f"%%flyte_task t{i}(seed: int = {i}) -> v{i}: list[float] --cpu 1 --retries 1"
            body = f"v{i} = [float(seed)] * 3"
        else:
            header = f"%%flyte_task t{i}(v{i - 1}: list[float], scale: float = 2.0) -> v{i}: list[float] --cache"
            body = f"factor = scale * 2\nv{i} = [x * factor for x in v{i - 1}]\nprint(len(v{i}))"
        nb.cells.append(new_code_cell(f"{header}\n{body}"))
    nbformat.write(nb, path)


def median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(path: Path, repeat: int) -> tuple[float, float]:
    read = median_time(lambda: nbformat.read(path, as_version=4), repeat)
    wf = validate_notebook(str(path))
    assert not wf.errors, wf.errors[:3]
    validate = median_time(lambda: validate_notebook(str(path)), repeat)
    return read, validate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small.ipynb", Path(tmp) / "large.ipynb"
        make_notebook(small, args.tasks)
        make_notebook(large, args.tasks * 4)
        read, validate = measure(small, args.repeat)
        _, validate4 = measure(large, max(2, args.repeat // 2))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "flyte_lab.cli.main", "validate", str(small)],
                              capture_output=True, text=True)
        cli = time.perf_counter() - start
        assert proc.returncode == 0, proc.stdout + proc.stderr
    ratio = validate / read
    scaling = (validate4 / (4 * args.tasks)) / (validate / args.tasks)
    print(f"tasks: {args.tasks}")
    print(f"nbformat.read:              {read * 1000:8.1f} ms")
    print(f"validate_notebook:          {validate * 1000:8.1f} ms")
    print(f"ratio validate / read:      {ratio:8.2f}x   (target <= 3x)")
    print(f"per-task cost at 4x tasks:  {scaling:8.2f}x   (linear ~ 1.0)")
    print(f"flyte-lab validate (whole process, incl. interpreter start): {cli * 1000:.0f} ms")
    if ratio > 3:
        sys.exit(f"FAIL: ratio {ratio:.2f} > 3")


if __name__ == "__main__":
    main()
