"""The front door of the graph package: a notebook path in, a validated `Workflow` out."""

from __future__ import annotations

from typing import Any

from flyte_lab.errors import NotebookReadError, ParameterError
from flyte_lab.graph.builder import build
from flyte_lab.graph.model import Diagnostic, Workflow
from flyte_lab.graph.notebook_reader import classify, kernel_name, read_notebook
from flyte_lab.graph.params import coerce, decode_value, encode_value, jsonable


def validate_notebook(path: str, cli_params: dict[str, Any] | None = None, launching: bool = False,
                      nb: Any = None) -> Workflow:
    """Parse and validate; a file that is no notebook gives a workflow with one `bad-notebook` error.

    `cli_params` are launch values (text from `-p` or Python values); an
    unknown name or a value that does not parse raises `ParameterError`.
    """
    try:
        notebook = nb if nb is not None else read_notebook(path)
    except NotebookReadError as exc:
        wf = Workflow(path=path)
        reason = exc.message.removeprefix(f"{path}: ")
        wf.diagnostics = [Diagnostic("error", "bad-notebook", reason)]
        return wf
    wf = build(path, classify(notebook), cli_params, launching)
    wf.kernel_name = kernel_name(notebook)
    return wf


def resolve_params(wf: Workflow, cli_params: dict[str, Any]) -> dict[str, Any]:
    """Launch values parsed as their declared types; refuse names that are no workflow input."""
    values: dict[str, Any] = {}
    for name, text in cli_params.items():
        spec = wf.workflow_inputs.get(name)
        if spec is None:
            known = ", ".join(sorted(wf.workflow_inputs)) or "none"
            raise ParameterError(f"-p {name}: `{name}` is not a workflow input of {wf.path} "
                                 f"(workflow inputs: {known})")
        values[name] = coerce(text, spec.type, name)
    return values


def encode_values(wf: Workflow, values: dict[str, Any]) -> dict[str, Any]:
    """Resolved launch values (`resolve_params`) as readable JSON for the run record, each by the declared
    type of its workflow input: a date stays "2024-01-02", a Path its text, an Enum its member name."""
    return {name: encode_value(value, wf.workflow_inputs[name].type) if name in wf.workflow_inputs
            else jsonable(value) for name, value in values.items()}


def decode_values(wf: Workflow, stored: dict[str, Any]) -> dict[str, Any]:
    """What `encode_values` stored, back as exactly the values `resolve_params` produced (for `resume`)."""
    values: dict[str, Any] = {}
    for name, data in stored.items():
        spec = wf.workflow_inputs.get(name)
        if spec is None:
            known = ", ".join(sorted(wf.workflow_inputs)) or "none"
            raise ParameterError(f"stored parameter `{name}` is no longer a workflow input of {wf.path} "
                                 f"(workflow inputs: {known}); launch a new run instead")
        values[name] = decode_value(data, spec.type, name)
    return values


def graph_json(wf: Workflow) -> dict[str, Any]:
    """The `validate --json` object of DESIGN.md section 2."""
    return {
        "tasks": [
            {
                "name": t.name,
                "cell": t.cell,
                "inputs": {p.name: p.type.display() for p in t.inputs},
                "outputs": {p.name: p.type.display() for p in t.outputs},
                "options": t.options.as_json(),
            }
            for t in (wf.tasks[n] for n in (wf.order if len(wf.order) == len(wf.tasks) else wf.tasks))
        ],
        "edges": [list(e) for e in wf.edges],
        "workflow_inputs": {
            name: {"type": spec.type.display(), "default": _default_json(spec.default, spec.type)}
            for name, spec in wf.workflow_inputs.items()
        },
        "diagnostics": [d.as_json() for d in wf.diagnostics],
    }


def _default_json(value: Any, ref: Any) -> Any:
    return encode_value(value, ref)  # a default of another type falls back to `jsonable`


__all__ = ["decode_values", "encode_values", "graph_json", "jsonable", "resolve_params", "validate_notebook"]
