"""Launch parameters: `-p NAME=VALUE` text parsed as the declared type, and stored as readable JSON.

`coerce` turns launch text (or a Python value from the API) into the driver-side
value of the declared type; `encode_value` writes that value as plain, readable
JSON for the run record (a date stays "2024-01-02"); `decode_value` gives back
exactly the value `coerce` produced, so a stored run can be resumed.

Driver-side values (the driver never imports the user's setup cells):

| declared type | driver-side value | stored JSON |
| --- | --- | --- |
| int, float, str, bool, None | the value | the value (`"NaN"`, `"Infinity"`, `"-Infinity"` for those floats) |
| date, datetime | `datetime.date` / `datetime.datetime` | ISO 8601 text |
| timedelta | `datetime.timedelta` (`-p t=90`, `-p t=10m`) | seconds |
| Path | `pathlib.Path` | its text |
| a setup-cell Enum | the member's *name* (`"RED"`) | the name |
| a setup-cell dataclass | its fields as a plain JSON dict | the dict |
| list, set, tuple | the container, elements as their types | a list |
| dict | the dict, keys and values as their types | an object, or `[[key, value], ...]` when keys are not all strings |
| Optional / Union | the first member type the text parses as | that member's JSON |

Enum members and dataclasses become real objects only in the task's kernel:
the artifact codec looks the member name up (`{"$enum_name": ...}`) and builds
the dataclass from its field dict (`{"$fields": ...}`), converting each field
to its annotated type there.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import pathlib
from typing import Any

from flyte_lab.errors import ParameterError
from flyte_lab.graph.model import TypeRef

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SEQUENCES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class _Refused(ValueError):
    """Why a value does not fit its type, in the user's words (never an internal repr)."""


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
    """Parse launch text (or take a Python value) as `ref`; raise `ParameterError` naming `where`."""
    try:
        return _coerce(text, ref, parse=True)
    except _Refused as exc:
        raise ParameterError(f"-p {where}={_shown(text)}: expects {ref.display()}: {exc}") from None


def decode_value(stored: Any, ref: TypeRef, where: str) -> Any:
    """The driver-side value `encode_value` stored for `ref` (JSON values are values, never launch text)."""
    try:
        return _coerce(stored, ref, parse=False)
    except _Refused as exc:
        raise ParameterError(f"stored parameter {where}={_shown(stored)} no longer fits its declared type "
                             f"{ref.display()} ({exc}); launch a new run with -p {where}=VALUE") from None


def encode_value(value: Any, ref: TypeRef) -> Any:
    """A driver-side value of `ref` as plain, readable JSON data."""
    kind, args = _kind(ref)
    if value is None:
        return None
    if kind == "union":
        arms = [a for a in args if _kind(a)[0] != "none"]
        for arm in arms:  # the arm decoding will pick: the first one the value fits
            try:
                _coerce(value, arm, parse=False)
            except _Refused:
                continue
            return encode_value(value, arm)
        return jsonable(value)
    if kind == "float" and isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if kind in ("date", "datetime") and isinstance(value, dt.date):
        return value.isoformat()
    if kind == "timedelta" and isinstance(value, dt.timedelta):
        return value.total_seconds()
    if kind == "path" and isinstance(value, os.PathLike):
        return os.fspath(value)
    if kind in _SEQUENCES and isinstance(value, (list, tuple, set, frozenset)):
        try:
            specs = _element_refs(kind, args, len(value))
        except _Refused:
            return jsonable(value)
        items = [encode_value(v, s) for v, s in zip(value, specs, strict=True)]
        return sorted(items, key=_sort_key) if kind in ("set", "frozenset") else items
    if kind == "dict" and isinstance(value, dict):
        key_ref, value_ref = (args[0], args[1]) if len(args) == 2 else (_ANY, _ANY)
        if all(isinstance(k, str) for k in value):
            return {k: encode_value(v, value_ref) for k, v in value.items()}
        return [[encode_value(k, key_ref), encode_value(v, value_ref)] for k, v in value.items()]
    return jsonable(value)


def jsonable(value: Any) -> Any:
    """Any value as readable JSON data, guided by its own type (dates as ISO text, an Enum by its name,
    a dataclass as its fields); the repr only for what has no readable form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=_sort_key)
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in value.items()}
    return repr(value)


# -- parsing ---------------------------------------------------------------------------------------

_ANY = TypeRef("typing.Any")
_KINDS = {
    "int": "int", "float": "float", "str": "str", "bool": "bool", "bytes": "bytes",
    "NoneType": "none", "None": "none", "types.NoneType": "none",
    "list": "list", "typing.List": "list", "tuple": "tuple", "typing.Tuple": "tuple",
    "set": "set", "typing.Set": "set", "frozenset": "frozenset", "typing.FrozenSet": "frozenset",
    "dict": "dict", "typing.Dict": "dict", "typing.Any": "any", "object": "any",
    "typing.Optional": "optional", "typing.Union": "union", "types.UnionType": "union",
    "datetime.datetime": "datetime", "datetime.date": "date", "datetime.timedelta": "timedelta",
    "pathlib.Path": "path", "pathlib.PosixPath": "path", "pathlib.PurePath": "path",
}
_HINTS = {
    "int": "not a whole number", "float": "not a number", "bool": "use true or false",
    "date": "use a date like 2024-01-02", "datetime": "use an ISO 8601 time like 2024-01-02T13:45:00",
    "timedelta": "use seconds or a duration like 90, 30s, 10m or 2h", "str": "not a string",
    "path": "use a file or folder path", "none": "only None",
    "enum": "use the name of one of its members, e.g. RED",
    "dataclass": 'write its fields as a JSON object, e.g. {"x": 1}',
    "list": "write a list as JSON or a Python literal, e.g. [1, 2]",
    "tuple": "write a tuple as JSON or a Python literal, e.g. [1, 2]",
    "set": "write a set as JSON or a Python literal, e.g. [1, 2]",
    "frozenset": "write a set as JSON or a Python literal, e.g. [1, 2]",
    "dict": 'write a dict as JSON or a Python literal, e.g. {"a": 1}',
}


def _kind(ref: TypeRef) -> tuple[str, tuple[TypeRef, ...]]:
    if ref.defined_as in ("enum", "dataclass"):
        return ref.defined_as, ()
    name = ref.name.removeprefix("builtins.")
    kind = _KINDS.get(name, "other")
    if kind == "optional":
        return "union", (*ref.args, TypeRef("NoneType"))
    return kind, ref.args


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _literal(text: str, kind: str) -> Any:
    """JSON first, then a Python literal; our own hint when neither parses (never ast's internals)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _Refused(_HINTS.get(kind, "not a value of that type")) from None


def _plain(value: Any) -> bool:
    """Data that JSON gives back unchanged (no tuples, sets, bytes or non-finite floats)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _coerce(value: Any, ref: TypeRef, parse: bool) -> Any:
    """`parse`: a str is launch text to parse as the type; else a str is a stored/nested JSON string."""
    kind, args = _kind(ref)
    text = parse and isinstance(value, str)
    if kind == "any":
        if not text:
            return value
        try:
            parsed = _literal(value, kind)
        except _Refused:
            return value
        return parsed if _plain(parsed) else value
    if kind == "union":
        allows_none = any(_kind(a)[0] in ("none", "any") for a in args)
        if value is None or (allows_none and text and value.strip() in ("None", "null", "")):
            if allows_none:
                return None
        arms = [a for a in args if _kind(a)[0] != "none"]
        if len(arms) == 1:
            return _coerce(value, arms[0], parse)
        for arm in arms:
            try:
                return _coerce(value, arm, parse)
            except _Refused:
                continue
        raise _Refused("matches none of " + ", ".join(a.display() for a in arms))
    if kind == "none":
        if value is None or (text and value.strip() in ("None", "null")):
            return None
        raise _Refused(_HINTS["none"])
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _Refused(_HINTS["str"])
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text and value.strip().lower() in ("true", "1", "yes"):
            return True
        if text and value.strip().lower() in ("false", "0", "no"):
            return False
        raise _Refused(_HINTS["bool"])
    if kind in ("int", "float"):
        return _number(value, kind, text)
    if kind in ("date", "datetime"):
        return _time(value, kind)
    if kind == "timedelta":
        return _timedelta(value, text)
    if kind == "path":
        if isinstance(value, str | os.PathLike):
            return pathlib.Path(value)
        raise _Refused(_HINTS["path"])
    if kind in _SEQUENCES:
        return _sequence(_literal(value, kind) if text else value, kind, args)
    if kind == "dict":
        return _dict(_literal(value, kind) if text else value, args)
    if kind == "enum":
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, str) and value.strip().isidentifier():
            return value.strip()
        raise _Refused(_HINTS["enum"])
    if kind == "dataclass":
        fields = _literal(value, kind) if text else value
        if dataclasses.is_dataclass(fields) and not isinstance(fields, type):
            fields = jsonable(fields)
        if not isinstance(fields, dict) or not all(isinstance(k, str) and k.isidentifier() for k in fields):
            raise _Refused(_HINTS["dataclass"])
        return jsonable(fields)
    # DataFrames, arrays, bytes and other classes cannot come from the command line as text
    if isinstance(value, str):
        raise _Refused(f"values of type {ref.display()} cannot be given with -p")
    return value


def _number(value: Any, kind: str, text: bool) -> Any:
    if text:
        value = _literal(value, kind)
    elif kind == "float" and isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]  # how non-finite floats are stored
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind == "int" and isinstance(value, float)):
        raise _Refused(_HINTS[kind])
    return float(value) if kind == "float" else value


def _time(value: Any, kind: str) -> Any:
    if isinstance(value, dt.datetime):
        return value if kind == "datetime" else value.date()
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()) if kind == "datetime" else value
    if isinstance(value, str):
        try:
            return (dt.datetime if kind == "datetime" else dt.date).fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Refused(_HINTS[kind])


def _timedelta(value: Any, text: bool) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if text:
        from flyte_lab.graph.header import parse_duration

        try:
            return dt.timedelta(seconds=parse_duration(value))
        except ValueError:
            raise _Refused(_HINTS["timedelta"]) from None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return dt.timedelta(seconds=value)
    raise _Refused(_HINTS["timedelta"])


def _element_refs(kind: str, args: tuple[TypeRef, ...], count: int) -> list[TypeRef]:
    if kind != "tuple" or not args:
        return [args[0] if args else _ANY] * count
    if len(args) == 2 and args[1].name in ("...", "Ellipsis"):
        return [args[0]] * count
    if len(args) == 1 and args[0].name in ("()", "tuple[()]"):
        args = ()
    if len(args) != count:
        raise _Refused(f"needs {len(args)} elements, got {count}")
    return list(args)


def _sequence(value: Any, kind: str, args: tuple[TypeRef, ...]) -> Any:
    accepted = (list, tuple, set, frozenset) if kind in ("set", "frozenset") else (list, tuple)
    if not isinstance(value, accepted):
        raise _Refused(_HINTS[kind])
    items = list(value)
    out = []
    for index, (item, spec) in enumerate(zip(items, _element_refs(kind, args, len(items)), strict=True)):
        try:
            out.append(_coerce(item, spec, parse=False))
        except _Refused as exc:
            raise _Refused(f"element {index} ({_shown(item)}) does not fit {spec.display()}: {exc}") from None
    try:
        return _SEQUENCES[kind](out)
    except TypeError:  # unhashable elements in a set
        raise _Refused("set elements must be hashable (numbers, strings, tuples)") from None


def _dict(value: Any, args: tuple[TypeRef, ...]) -> dict[Any, Any]:
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = value  # how dicts whose keys are not all strings are stored
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise _Refused(_HINTS["dict"])
    key_ref, value_ref = (args[0], args[1]) if len(args) == 2 else (_ANY, _ANY)
    key_kind = _kind(key_ref)[0]
    out: dict[Any, Any] = {}
    for key, item in pairs:
        try:
            # JSON object keys are always text: parse them as the key type (`{"1": …}` for dict[int, …])
            parse_key = isinstance(value, dict) and key_kind not in ("str", "any", "enum")
            new_key = _coerce(key, key_ref, parse=parse_key)
            out[new_key] = _coerce(item, value_ref, parse=False)
        except _Refused as exc:
            raise _Refused(f"entry {_shown(key)}: {exc}") from None
        except TypeError:
            raise _Refused(f"key {_shown(key)} cannot be a dict key") from None
    return out


__all__ = ["coerce", "decode_value", "encode_value", "jsonable", "split_params"]
