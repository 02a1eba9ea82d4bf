"""The sidebar's input form, described from the declared types: one field per workflow input.

The browser draws a control per `widget` and sends back launch text, exactly what `-p NAME=VALUE` takes
(`graph/params.coerce` parses it on the server, which stays the judge: a refused value is a 400). The
form itself holds no type rules beyond these: which control to draw, what to pre-fill, what shape of
JSON a container needs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flyte_lab.graph.model import TypeRef, Workflow, WorkflowInput
from flyte_lab.graph.params import encode_value

# declared type (qualified name) -> control; anything else is a text box parsed by the server
_WIDGETS = {
    "int": "int", "float": "float", "bool": "bool", "str": "str",
    "datetime.date": "date", "datetime.datetime": "datetime", "datetime.timedelta": "timedelta",
    "pathlib.Path": "path", "pathlib.PosixPath": "path", "pathlib.PurePath": "path",
    "list": "json", "typing.List": "json", "tuple": "json", "typing.Tuple": "json", "set": "json",
    "typing.Set": "json", "frozenset": "json", "typing.FrozenSet": "json",
    "dict": "json", "typing.Dict": "json",
}
_OBJECTS = {"dict", "typing.Dict"}
_NONE = {"NoneType", "None", "types.NoneType"}
_UNIONS = {"typing.Optional", "typing.Union", "types.UnionType"}


def _base(ref: TypeRef) -> tuple[TypeRef, bool]:
    """The type to draw a control for, and whether None is allowed (`X | None`, `Optional[X]`)."""
    name = ref.name.removeprefix("builtins.")
    if name not in _UNIONS:
        return ref, False
    arms = [a for a in ref.args if a.name.removeprefix("builtins.") not in _NONE]
    optional = name == "typing.Optional" or len(arms) < len(ref.args)
    if len(arms) == 1:
        return arms[0], optional
    return ref, optional  # a real union: a text box, the server picks the first arm that parses


def widget_of(ref: TypeRef) -> tuple[str, str | None, bool]:
    """(`widget`, JSON shape for `json` widgets, optional) for a declared type."""
    base, optional = _base(ref)
    if base.defined_as == "enum":
        return "enum", None, optional
    if base.defined_as == "dataclass":
        return "json", "object", optional
    name = base.name.removeprefix("builtins.")
    widget = _WIDGETS.get(name, "text")
    shape = ("object" if name in _OBJECTS else "array") if widget == "json" else None
    return widget, shape, optional


def default_text(spec: WorkflowInput, widget: str) -> str:
    """The launch text of the input's default (what the control is pre-filled with); "" when none."""
    if not spec.has_default or spec.default is None:
        return ""
    value = encode_value(spec.default, spec.type)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and widget != "float":
        return str(int(value))  # a timedelta of 5.0 seconds is written 5
    return json.dumps(value)


def input_fields(wf: Workflow) -> list[dict[str, Any]]:
    """One field per workflow input, in the graph's order."""
    fields = []
    for name, spec in wf.workflow_inputs.items():
        widget, shape, optional = widget_of(spec.type)
        fields.append({
            "name": name,
            "type": spec.type.display(),
            "widget": widget,
            "json_shape": shape,
            "optional": optional,
            "required": not spec.has_default,
            "default_text": default_text(spec, widget),
        })
    return fields
