"""Ploomber peer: a workload as a DAG of NotebookRunner tasks on the Parallel executor (run in Ploomber's venv).

    benchmarks/.venvs/ploomber/bin/python benchmarks/run_ploomber.py WORKDIR [--workers 2]

WORKDIR holds `workload.json` and the task notebooks `peer_inputs.write_ploomber` wrote; products go
to a fresh `WORKDIR/out-*` folder so nothing is skipped as up to date. A map-over is unrolled into
one task per element (Ploomber's DAG is static). Asserts the result read from the last product.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ploomber import DAG
from ploomber.executors import Parallel
from ploomber.products import File
from ploomber.tasks import NotebookRunner

sys.path.insert(0, str(Path(__file__).parent))
from peer_inputs import ploomber_names  # the path first: run as a script, from any cwd
from workloads import Workload, workload_from_json


def build_dag(workload: Workload, workdir: Path, out: Path, workers: int) -> DAG:
    dag = DAG(executor=Parallel(processes=workers))
    tasks: dict[str, list[NotebookRunner]] = {}
    for task in workload.tasks:
        tasks[task.name] = []
        for index, name in enumerate(ploomber_names(workload, task)):
            product = {"nb": File(out / f"{name}.ipynb"), "data": File(out / f"{name}.json")}
            params = {"index": index} if task.map_over else {}
            runner = NotebookRunner(workdir / f"{task.name}.ipynb", product, dag=dag, name=name, params=params,
                                    kernelspec_name="python3")
            for var in task.inputs:
                for upstream in tasks[workload.producer(var.name).name]:
                    upstream >> runner
            tasks[task.name].append(runner)
    return dag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    workload = workload_from_json((args.workdir / "workload.json").read_text())
    out = Path(tempfile.mkdtemp(prefix="out-", dir=args.workdir))
    build_dag(workload, args.workdir, out, args.workers).build(force=True)
    result = json.loads((out / f"{workload.tasks[-1].name}.json").read_text())[workload.result]
    workload.check(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
