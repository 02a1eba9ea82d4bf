"""Each tool's input, written from one workload (untimed: the benchmark times running, not authoring).

- flyte_lab: one notebook of `%%flyte_setup` and `%%flyte_task` cells;
- papermill: the same code top to bottom in one notebook, map-over as a loop, ending in an assert;
- floor: nothing to write, `run_floor.py` reads the workload's JSON;
- Ploomber: one notebook per task (per map-over element: Ploomber has no dynamic map), reading its
  upstream tasks' JSON products and writing its own;
- flytekit: one notebook per task with a `parameters` cell and an `outputs` cell (`record_outputs`);
  a map-over is one notebook taking the whole list and an index.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from workloads import INT, Task, Var, Workload

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _notebook(cells: list[str], tags: dict[int, str] | None = None,
              kernel_name: str = "python3") -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(src) for src in cells])
    for index, tag in (tags or {}).items():
        nb.cells[index].metadata["tags"] = [tag]
    # papermill (and so every peer) needs a kernel name
    nb.metadata["kernelspec"] = {**KERNELSPEC, "name": kernel_name}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _signature(vars_: tuple[Var, ...]) -> str:
    return ", ".join(f"{v.name}: {v.type}" for v in vars_)


def flyte_header(task: Task) -> str:
    outputs = _signature(task.outputs)
    if len(task.outputs) > 1:
        outputs = f"({outputs})"
    option = f" --map-over {task.map_over}" if task.map_over else ""
    return f"%%flyte_task {task.name}({_signature(task.inputs)}) -> {outputs}{option}"


def write_flyte(workload: Workload, path: Path, kernel_name: str = "python3") -> None:
    cells = [f"%%flyte_setup\n{workload.setup}"] if workload.setup else []
    cells += [f"{flyte_header(t)}\n{t.body}" for t in workload.tasks]
    nbformat.write(_notebook(cells, kernel_name=kernel_name), path)


def plain_cell(task: Task) -> str:
    """A task as top-to-bottom code; a map-over becomes a loop that leaves its outputs as lists."""
    if not task.map_over:
        return task.body
    lists = [f"_{o.name}_all = []" for o in task.outputs]
    appends = [f"    _{o.name}_all.append({o.name})" for o in task.outputs]
    ends = [f"{o.name} = _{o.name}_all" for o in task.outputs]
    loop = [f"_{task.map_over}_all = {task.map_over}", f"for {task.map_over} in _{task.map_over}_all:",
            textwrap.indent(task.body, "    "), *appends, f"{task.map_over} = _{task.map_over}_all"]
    return "\n".join([*lists, *loop, *ends])


def write_plain(workload: Workload, path: Path, kernel_name: str = "python3") -> None:
    check = f"assert {workload.result} == {workload.expected}, {workload.result}"
    cells = [workload.setup] if workload.setup else []
    cells += [plain_cell(t) for t in workload.tasks] + [check]
    nbformat.write(_notebook(cells, kernel_name=kernel_name), path)


# -- Ploomber: files as the only channel between tasks (its NotebookRunner injects `upstream` and `product`)

def ploomber_names(workload: Workload, task: Task) -> list[str]:
    """The static Ploomber task names of one workload task: one per element for a map-over."""
    if task.map_over:
        return [f"{task.name}_{k}" for k in range(workload.map_length)]
    return [task.name]


def _ploomber_input(workload: Workload, var: Var) -> str:
    producer = workload.producer(var.name)
    read = "json.loads(Path(upstream[{name!r}]['data']).read_text())[{var!r}]"
    if producer.map_over:  # the element outputs, in input order
        names = ploomber_names(workload, producer)
        return f"{var.name} = [" + ", ".join(read.format(name=n, var=var.name) for n in names) + "]"
    return f"{var.name} = " + read.format(name=producer.name, var=var.name)


def write_ploomber(workload: Workload, folder: Path) -> None:
    """One notebook per workload task; map-over elements share theirs and differ by the `index` parameter."""
    for task in workload.tasks:
        params = "upstream = None\nproduct = None" + ("\nindex = None" if task.map_over else "")
        inputs = ["import json\nfrom pathlib import Path"] + [_ploomber_input(workload, v) for v in task.inputs]
        if task.map_over:
            inputs.append(f"{task.map_over} = {task.map_over}[index]")
        outputs = "{" + ", ".join(f"{o.name!r}: {o.name}" for o in task.outputs) + "}"
        cells = [params, workload.setup or "pass", "\n".join(inputs), task.body,
                 f"Path(product['data']).write_text(json.dumps({outputs}))"]
        nbformat.write(_notebook(cells, {0: "parameters"}), folder / f"{task.name}.ipynb")


# -- flytekit: NotebookTask reads inputs from the `parameters` cell, outputs from `record_outputs` in `outputs`

def flytekit_inputs(task: Task) -> tuple[Var, ...]:
    """A map-over element takes the whole list and its index (NotebookTask has no map of its own here)."""
    if not task.map_over:
        return task.inputs
    listed = tuple(Var(v.name, f"list[{v.type}]") if v.name == task.map_over else v for v in task.inputs)
    return (*listed, Var("index", INT))


def write_flytekit(workload: Workload, folder: Path) -> None:
    for task in workload.tasks:
        defaults = [f"{v.name} = {'[]' if v.type.startswith('list') else 0}" for v in flytekit_inputs(task)]
        pick = [f"{task.map_over} = {task.map_over}[index]"] if task.map_over else []
        record = ", ".join(f"{o.name}={o.name}" for o in task.outputs)
        cells = ["\n".join(defaults) or "pass", workload.setup or "pass", "\n".join([*pick, task.body]),
                 f"from flytekitplugins.papermill import record_outputs\nrecord_outputs({record})"]
        nbformat.write(_notebook(cells, {0: "parameters", 3: "outputs"}), folder / f"{task.name}.ipynb")
