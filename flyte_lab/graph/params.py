"""`-p NAME=VALUE` launch parameters: split, then parse each as its declared type."""

from __future__ import annotations

import ast
import datetime as dt
import json
import pathlib
from typing import Any

from flyte_lab.errors import ParameterError
from flyte_lab.graph.model import TypeRef


def split_params(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ParameterError(f"-p {item}: must read `-p NAME=VALUE`")
        out[name] = value
    return out


def coerce(text: Any, ref: TypeRef, where: str) -> Any:
    """Parse launch text (or pass a Python value) as `ref`; raise `ParameterError` naming `where`."""
    try:
        return _coerce(text, ref)
    except (ValueError, SyntaxError, TypeError) as exc:
        reason = f": {exc}" if str(exc) and not isinstance(exc, SyntaxError) else ""
        raise ParameterError(
            f"-p {where}={text}: expects {ref.display()}; `{text}` does not parse as {ref.display()}{reason}"
        ) from None


def _literal(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def _coerce(text: Any, ref: TypeRef) -> Any:
    name = ref.name
    if name == "typing.Any":
        if isinstance(text, str):
            try:
                return _literal(text)
            except (ValueError, SyntaxError):
                return text
        return text
    if name == "typing.Optional":
        if text is None or (isinstance(text, str) and text.strip() in ("None", "null", "")):
            return None
        return _coerce(text, ref.args[0])
    if name == "typing.Union":
        for member in ref.args:
            try:
                return _coerce(text, member)
            except (ValueError, SyntaxError, TypeError):
                continue
        raise ValueError("matches none of the union's types")
    if name == "str":
        if isinstance(text, str):
            return text
        raise TypeError("not a string")
    if name == "bool":
        if isinstance(text, bool):
            return text
        lowered = str(text).strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("use true or false")
    if name == "int":
        value = _literal(text)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not a whole number")
        return value
    if name == "float":
        value = _literal(text)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("not a number")
        return float(value)
    if name == "datetime.datetime":
        return text if isinstance(text, dt.datetime) else dt.datetime.fromisoformat(str(text))
    if name == "datetime.date":
        return text if isinstance(text, dt.date) else dt.date.fromisoformat(str(text))
    if name == "pathlib.Path":
        return pathlib.Path(text)
    if name in ("list", "tuple", "set", "dict"):
        value = _literal(text)
        expected = {"list": (list, tuple), "tuple": (list, tuple), "set": (list, tuple, set), "dict": (dict,)}[name]
        if not isinstance(value, expected):
            raise ValueError(f"not a {name}")
        if isinstance(value, dict):
            if len(ref.args) == 2:
                return {_coerce(k, ref.args[0]) if not isinstance(k, str) or ref.args[0].name != "str" else k:
                        _coerce(v, ref.args[1]) for k, v in value.items()}
            return value
        items = list(value)
        if ref.args and name != "tuple":
            items = [_coerce(v, ref.args[0]) for v in items]
        return {"list": list, "tuple": tuple, "set": set}[name](items)
    if name == "NoneType":
        if text in (None, "None", "null"):
            return None
        raise ValueError("only None")
    # DataFrames, arrays and classes cannot come from the command line as text
    if isinstance(text, str):
        raise TypeError(f"values of type {ref.display()} cannot be given with -p")
    return text
