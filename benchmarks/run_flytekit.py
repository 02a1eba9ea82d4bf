"""flytekit peer: a workload as NotebookTasks in a workflow, executed locally (run in flytekit's venv).

    benchmarks/.venvs/flytekit/bin/python benchmarks/run_flytekit.py WORKDIR

WORKDIR holds `workload.json` and the task notebooks `peer_inputs.write_flytekit` wrote. A map-over is
one NotebookTask called once per element with the whole list and an index: flytekit's `map_task`
takes only single-output tasks, and a NotebookTask always adds two (`out_nb`, `out_rendered_nb`).
Local execution runs the nodes one after another, as flytekit does. Asserts the workflow's result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flytekit import kwtypes, workflow
from flytekitplugins.papermill import NotebookTask

sys.path.insert(0, str(Path(__file__).parent))
from peer_inputs import flytekit_inputs  # the path first: run as a script, from any cwd
from workloads import Var, Workload, workload_from_json

TYPES: dict[str, Any] = {"int": int, "list[int]": list[int]}


def _types(vars_: tuple[Var, ...]) -> dict[str, Any]:
    return kwtypes(**{v.name: TYPES[v.type] for v in vars_})


def build_workflow(workload: Workload, workdir: Path) -> Any:
    tasks = {
        t.name: NotebookTask(name=f"{workload.name}.{t.name}", notebook_path=str(workdir / f"{t.name}.ipynb"),
                             render_deck=False, inputs=_types(flytekit_inputs(t)), outputs=_types(t.outputs))
        for t in workload.tasks
    }

    def body() -> int:  # run once by @workflow to compile the graph: its values are promises
        produced: dict[str, Any] = {}
        for task in workload.tasks:
            if task.map_over is None:
                node = tasks[task.name](**{v.name: produced[v.name] for v in task.inputs})
                # a NotebookTask adds its executed notebooks (out_nb, out_rendered_nb) to the outputs
                produced.update({o.name: getattr(node, o.name) for o in task.outputs})
                continue
            elements = [tasks[task.name](**{v.name: produced[v.name] for v in task.inputs}, index=k)
                        for k in range(workload.map_length)]
            produced.update({o.name: [getattr(e, o.name) for e in elements] for o in task.outputs})
        return produced[workload.result]

    return workflow(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()
    workload = workload_from_json((args.workdir / "workload.json").read_text())
    result = build_workflow(workload, args.workdir.resolve())()
    workload.check(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
