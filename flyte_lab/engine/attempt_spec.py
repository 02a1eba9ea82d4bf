"""What one task attempt needs on a worker, as plain data that crosses Dask.

Nothing here names a driver-local path: executed notebooks and result files
live under the artifact root (any fsspec URL), so a worker on another machine
writes where the driver reads. The HMAC key and secrets travel in the spec
(never in the notebook papermill writes: only `context` is injected there).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from flyte_lab.graph.header import memory_bytes
from flyte_lab.graph.model import Workflow, typeref_to_json
from flyte_lab.graph.type_rules import as_list


def run_folder(artifacts: Any, run_id: str, task: str) -> str:
    """Where a task's executed notebooks go: a plain path for a local root, else a URL."""
    root = artifacts.root_url
    if getattr(artifacts, "local", False) and root.startswith("file://"):
        root = root.removeprefix("file://")
    return f"{root}/runs/{run_id}/{task}"


def split_outputs(wf: Workflow) -> set[tuple[str, str]]:
    """(task, output) pairs that feed a `--map-over` input: stored element by element."""
    out: set[tuple[str, str]] = set()
    for task in wf.tasks.values():
        mapped = task.options.map_over
        if mapped:
            producer = wf.producer_of(mapped)
            if producer is not None and wf.tasks[producer].options.map_over is None:
                out.add((producer, mapped))
    return out


def setup_modules(wf: Workflow) -> list[str]:
    """The modules the setup cells import at top level, in order: a worker preloads them into its kernel
    template once, so no task pays for them (imports inside functions or under `if` are left alone)."""
    modules: list[str] = []
    for setup in wf.setup:
        source = "\n".join(line for line in setup.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # validation reports it; nothing to preload
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            modules.extend(n for n in names if n not in modules)
    return modules


def attempt_spec(*, wf: Workflow, task: str, run_id: str, number: int, inputs: dict[str, dict[str, Any]],
                 artifacts: Any, artifact_key: str, secrets: dict[str, str] | None, scrub: list[str],
                 split: set[tuple[str, str]], notebook: Any, map_index: int | None = None,
                 element_uri: str | None = None, modules: list[str] | None = None) -> dict[str, Any]:
    spec_task = wf.tasks[task]
    suffix = f"attempt-{number}" + (f"-item-{map_index}" if map_index is not None else "")
    input_specs = []
    for param in spec_task.inputs:
        mapped = param.name == spec_task.options.map_over
        # an element task reads only its element: its own artifact, typed as the element
        input_specs.append({"name": param.name, "type": typeref_to_json(param.type),
                            "uri": element_uri if mapped else inputs[param.name]["uri"]})
    outputs = [{"name": p.name, "type": typeref_to_json(p.type), **({"split": True} if (task, p.name) in split else {})}
               for p in spec_task.outputs]
    return _spec(wf, task, run_id, suffix, artifacts, artifact_key, secrets, scrub, notebook, map_index,
                 input_specs, outputs, modules)


def batch_spec(*, wf: Workflow, task: str, run_id: str, number: int, inputs: dict[str, dict[str, Any]],
               artifacts: Any, artifact_key: str, secrets: dict[str, str] | None, scrub: list[str],
               split: set[tuple[str, str]], notebook: Any, elements: list[tuple[int, str]],
               modules: list[str] | None = None) -> dict[str, Any]:
    """The attempt of one kernel that runs several map-over `elements` ((index, element uri), consecutive) one
    after the other (`task_notebook.build_batch_notebook`): each element keeps its own input and result file."""
    spec = attempt_spec(wf=wf, task=task, run_id=run_id, number=number, inputs=inputs, artifacts=artifacts,
                        artifact_key=artifact_key, secrets=secrets, scrub=scrub, split=split, notebook=notebook,
                        modules=modules)
    first, last = elements[0][0], elements[-1][0]
    suffix = f"attempt-{number}-items-{first}-{last}"
    folder = run_folder(artifacts, run_id, task)
    mapped = wf.tasks[task].options.map_over
    context = spec["context"]
    del context["result_path"]
    context["inputs"] = [{**s, "uri": None} if s["name"] == mapped else s for s in context["inputs"]]
    context["map_over"] = mapped
    context["elements"] = {index: {"uri": uri, "result_path": f"{folder}/attempt-{number}-item-{index}.outputs.json"}
                           for index, uri in elements}
    spec.update(key=f"flyte-{run_id}-{task}-{suffix}", output_notebook=f"{folder}/{suffix}.ipynb",
                elements=[index for index, _ in elements])
    return spec


def split_spec(*, wf: Workflow, task: str, run_id: str, number: int, uri: str, artifacts: Any, artifact_key: str,
               scrub: list[str], notebook: Any, modules: list[str] | None = None) -> dict[str, Any]:
    """The attempt of the kernel that stores the list at `uri`, fed to `task`'s `--map-over` input, element by
    element (a manifest): the list is its one input and its one output, under the mapped input's name. It runs
    no task code and gets no secrets."""
    spec_task = wf.tasks[task]
    mapped = spec_task.input(spec_task.options.map_over or "")
    assert mapped is not None
    list_type = typeref_to_json(as_list(mapped.type))
    return _spec(wf, task, run_id, f"attempt-{number}-split", artifacts, artifact_key, None, scrub, notebook, None,
                 [{"name": mapped.name, "type": list_type, "uri": uri}],
                 [{"name": mapped.name, "type": list_type, "split": True}], modules)


def _spec(wf: Workflow, task: str, run_id: str, suffix: str, artifacts: Any, artifact_key: str,
          secrets: dict[str, str] | None, scrub: list[str], notebook: Any, map_index: int | None,
          inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], modules: list[str] | None) -> dict[str, Any]:
    spec_task = wf.tasks[task]
    folder = run_folder(artifacts, run_id, task)
    key = f"flyte-{run_id}-{task}-{suffix}"
    return {
        "key": key, "task": task, "cell": spec_task.cell, "body_line": spec_task.body_line,
        "kernel_name": wf.kernel_name, "notebook": notebook, "timeout_s": spec_task.options.timeout_s,
        # --mem is enforced on the kernel (worker/usage.py), not only asked of Dask
        "mem_limit_bytes": memory_bytes(spec_task.options.mem) if spec_task.options.mem else None,
        "env": secrets or None, "scrub": scrub, "artifact_key": artifact_key, "map_index": map_index,
        "setup_modules": modules or [],
        "output_notebook": f"{folder}/{suffix}.ipynb",
        "context": {
            "task": task, "artifacts": artifacts.root_url,
            "cwd": str(Path(wf.path).resolve().parent), "map_index": map_index,
            "result_path": f"{folder}/{suffix}.outputs.json",
            "inputs": inputs,
            "outputs": outputs,
        },
    }


def gathered_type(wf: Workflow, task: str, output: str) -> Any:
    param = next(p for p in wf.tasks[task].outputs if p.name == output)
    return as_list(param.type)
