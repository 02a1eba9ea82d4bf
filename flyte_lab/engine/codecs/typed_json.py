"""Typed JSON encoding of task values, driven by their declared types.

The declared type decides how a value is written and read back, so the JSON
needs no type tags to be decoded: `bytes`, datetimes and non-finite floats
are tagged (`{"$bytes": ...}`) only to stay readable. A type is either a
`TypeRef` (declared in a header) or a live annotation (a dataclass field);
`shape_of` turns both into one `Shape`. Parts JSON cannot hold raise
`NotJson`, and the store then pickles the whole value instead.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import pathlib
import reprlib
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flyte_lab.errors import ArtifactError, TaskTypeError
from flyte_lab.graph.model import TypeRef

ANY = TypeRef("typing.Any")
NONE = TypeRef("NoneType")

# declared names -> kinds; anything else is an "other" class (cloudpickle)
_NAMED_KINDS: dict[str, str] = {
    "int": "int", "float": "float", "str": "str", "bool": "bool", "bytes": "bytes",
    "NoneType": "none", "None": "none", "types.NoneType": "none",
    "list": "list", "typing.List": "list", "tuple": "tuple", "typing.Tuple": "tuple",
    "set": "set", "typing.Set": "set", "frozenset": "frozenset", "typing.FrozenSet": "frozenset",
    "dict": "dict", "typing.Dict": "dict",
    "typing.Any": "any", "object": "any", "typing.Literal": "any",
    "typing.Optional": "optional", "typing.Union": "union", "types.UnionType": "union",
    "datetime.datetime": "datetime", "datetime.date": "date", "datetime.timedelta": "timedelta",
    "pathlib.Path": "path", "pathlib.PosixPath": "path", "pathlib.PurePath": "path",
    "pandas.DataFrame": "dataframe", "pandas.core.frame.DataFrame": "dataframe",
    "pandera.typing.DataFrame": "dataframe", "pandera.typing.pandas.DataFrame": "dataframe",
    "numpy.ndarray": "ndarray", "numpy.typing.NDArray": "ndarray",
}
_CLASS_KINDS: dict[Any, str] = {
    int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes", type(None): "none",
    list: "list", tuple: "tuple", set: "set", frozenset: "frozenset", dict: "dict",
    object: "any", dt.datetime: "datetime", dt.date: "date", dt.timedelta: "timedelta",
}
# kinds stored as their own artifact, referenced by key from inside JSON
NESTED_KINDS = frozenset({"path", "dataframe", "ndarray"})


class NotJson(Exception):
    """Raised while encoding when a part of the value can only travel by cloudpickle."""

    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


@dataclass(frozen=True)
class Shape:
    """What encoding needs to know about one declared type."""

    kind: str
    args: tuple[Any, ...] = ()  # nested specs: TypeRefs or annotations
    name: str = ""  # for messages and for finding setup classes
    cls: type | None = None  # known for annotations; looked up in the namespace for TypeRefs


@dataclass
class Context:
    """Per-call state: the kernel namespace and how nested artifacts are stored/read."""

    namespace: dict[str, Any] | None = None
    put_nested: Callable[[Any, Any], str] | None = None  # (value, spec) -> store key
    get_nested: Callable[[str, Any], Any] | None = None  # (key, spec) -> value


def qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"


def display(spec: Any) -> str:
    return spec.display() if isinstance(spec, TypeRef) else getattr(spec, "__name__", str(spec))


def shape_of(spec: Any) -> Shape:
    if isinstance(spec, TypeRef):
        return _shape_of_ref(spec)
    return _shape_of_annotation(spec)


def _shape_of_ref(ref: TypeRef) -> Shape:
    name = ref.name.removeprefix("builtins.")
    if ref.defined_as in ("dataclass", "enum"):
        return Shape(ref.defined_as, ref.args, name)
    kind = _NAMED_KINDS.get(name, "other")
    if kind == "optional":  # Optional[T] is Union[T, None]
        return Shape("union", (*ref.args, NONE), name)
    if kind == "any" and name == "typing.Literal":
        return Shape("any", (), name)
    return Shape(kind, ref.args, name)


def _shape_of_annotation(ann: Any) -> Shape:
    if ann is None or ann is type(None):
        return Shape("none")
    if ann is Any or isinstance(ann, (str, typing.ForwardRef, typing.TypeVar)):
        return Shape("any")  # unresolved annotations carry no usable type
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return Shape("union", typing.get_args(ann))
    if origin is typing.Literal:
        return Shape("any")
    if origin is not None:
        base = _shape_of_annotation(origin)
        return Shape(base.kind, typing.get_args(ann), base.name, base.cls)
    if not isinstance(ann, type):
        return Shape("any")
    if ann in _CLASS_KINDS:
        return Shape(_CLASS_KINDS[ann], (), qualname(ann), ann)
    if issubclass(ann, enum.Enum):
        return Shape("enum", (), qualname(ann), ann)
    if dataclasses.is_dataclass(ann):
        return Shape("dataclass", (), qualname(ann), ann)
    if issubclass(ann, pathlib.PurePath):
        return Shape("path", (), qualname(ann), ann)
    if _is_dataframe_class(ann):
        return Shape("dataframe", (), qualname(ann), ann)
    np = sys.modules.get("numpy")
    if np is not None and issubclass(ann, np.ndarray):
        return Shape("ndarray", (), qualname(ann), ann)
    return Shape("other", (), qualname(ann), ann)


def _is_dataframe_class(cls: type) -> bool:
    pd = sys.modules.get("pandas")  # only loaded if the user's code loaded it
    return pd is not None and issubclass(cls, pd.DataFrame)


def is_dataframe(value: Any) -> bool:
    return _is_dataframe_class(type(value))


def is_ndarray(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def canonical_json(data: Any) -> bytes:
    """One byte string per value, so equal values get equal content hashes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


_PREVIEW = reprlib.Repr()  # bounded work for huge values (3.11 takes no constructor arguments)
_PREVIEW.maxlevel, _PREVIEW.maxlist, _PREVIEW.maxdict = 3, 12, 8
_PREVIEW.maxstring, _PREVIEW.maxother, _PREVIEW.maxlong = 120, 120, 60


def preview_of(value: Any, limit: int = 200) -> str:
    try:
        text = _PREVIEW.repr(value)
    except Exception:  # a user __repr__ that raises must not break storing
        text = f"<{qualname(type(value))}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mismatch(value: Any, spec: Any) -> TaskTypeError:
    got = qualname(type(value))
    return TaskTypeError(f"value of type {got} does not match the declared type {display(spec)}",
                         expected=display(spec), got=got)


# -- encoding -------------------------------------------------------------------------------


def encode(value: Any, spec: Any, ctx: Context) -> Any:
    """Turn `value` into plain JSON data following `spec`; NotJson if it cannot be."""
    shape = shape_of(spec)
    kind = shape.kind
    if value is None:
        if kind in ("none", "any") or (kind == "union" and _allows_none(shape)):
            return None
        raise _mismatch(value, spec)
    if kind == "union":
        return _encode_union(value, spec, shape, ctx)
    if kind == "any":
        if not _is_plain(value):
            raise NotJson(qualname(type(value)))
        return value
    if kind in ("int", "bool"):
        if not isinstance(value, int) or (kind == "bool" and not isinstance(value, bool)):
            raise _mismatch(value, spec)
        return value if isinstance(value, bool) else int(value)
    if kind == "float":
        if not isinstance(value, (int, float)):
            raise _mismatch(value, spec)
        if isinstance(value, float) and not math.isfinite(value):
            return {"$float": repr(float(value))}  # 'nan', 'inf', '-inf'
        return value if type(value) in (int, bool) else float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise _mismatch(value, spec)
        return str(value)
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _mismatch(value, spec)
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if kind in ("datetime", "date", "timedelta"):
        return _encode_time(value, spec, kind)
    if kind in ("list", "tuple", "set", "frozenset"):
        return _encode_sequence(value, spec, shape, ctx)
    if kind == "dict":
        return _encode_dict(value, spec, shape, ctx)
    if kind == "dataclass":
        if isinstance(value, dict) and isinstance(spec, TypeRef) and _is_plain(value):
            return {"$fields": value}  # a launch parameter: the driver knows the fields, not the class
        return _encode_dataclass(value, spec, shape, ctx)
    if kind == "enum":
        if isinstance(value, str) and isinstance(spec, TypeRef) and value.isidentifier():
            return {"$enum_name": value}  # a launch parameter: the member's name, looked up in the kernel
        if not isinstance(value, enum.Enum) or type(value).__qualname__ != _tail(shape):
            raise _mismatch(value, spec)
        return encode(value.value, ANY, ctx)
    if kind in NESTED_KINDS:
        check_nested(value, spec, kind)
        if ctx.put_nested is None:
            raise NotJson(qualname(type(value)))
        return {"$artifact": ctx.put_nested(value, spec)}
    if kind == "none":
        raise _mismatch(value, spec)
    raise NotJson(qualname(type(value)))


def _allows_none(shape: Shape) -> bool:
    return any(shape_of(arm).kind in ("none", "any") for arm in shape.args)


def _tail(shape: Shape) -> str:
    """The class's __qualname__ as a setup cell defines it (`__setup__.A.B` -> `A.B`)."""
    if shape.cls is not None:
        return shape.cls.__qualname__
    return shape.name.removeprefix("__setup__.")


def _is_plain(value: Any) -> bool:
    """True for data JSON gives back unchanged: exact builtin types, str-keyed dicts."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_is_plain(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    return False


def _encode_union(value: Any, spec: Any, shape: Shape, ctx: Context) -> Any:
    arms = [arm for arm in shape.args if shape_of(arm).kind != "none"]
    if len(arms) == 1:
        return encode(value, arms[0], ctx)
    # first matching arm wins; its index tells decoding which arm to use
    not_json: NotJson | None = None
    for index, arm in enumerate(arms):
        try:
            return {"$union": index, "value": encode(value, arm, ctx)}
        except TaskTypeError:
            continue
        except NotJson as exc:
            not_json = not_json or exc
    if not_json is not None:
        raise not_json
    raise _mismatch(value, spec)


def _encode_time(value: Any, spec: Any, kind: str) -> Any:
    if kind == "timedelta":
        if not isinstance(value, dt.timedelta):
            raise _mismatch(value, spec)
        seconds = value.days * 86400 + value.seconds
        return {"$timedelta": seconds + value.microseconds / 1e6 if value.microseconds else seconds}
    if isinstance(value, dt.datetime):  # a datetime is also an acceptable date
        return {"$datetime": value.isoformat()}
    if kind == "date" and isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    raise _mismatch(value, spec)


def _element_specs(shape: Shape, count: int) -> list[Any]:
    args = shape.args
    if shape.kind != "tuple" or not args:
        return [args[0] if args else ANY] * count
    if len(args) == 2 and is_ellipsis(args[1]):
        return [args[0]] * count
    if len(args) == 1 and isinstance(args[0], TypeRef) and args[0].name in ("()", "tuple[()]"):
        return []
    return list(args)


def is_ellipsis(spec: Any) -> bool:
    return spec is Ellipsis or (isinstance(spec, TypeRef) and spec.name in ("...", "Ellipsis"))


def _encode_sequence(value: Any, spec: Any, shape: Shape, ctx: Context) -> Any:
    allowed = {"list": list, "tuple": tuple}.get(shape.kind, (set, frozenset))
    if not isinstance(value, allowed):  # type: ignore[arg-type]
        raise _mismatch(value, spec)
    specs = _element_specs(shape, len(value))
    if len(specs) != len(value):
        raise TaskTypeError(f"tuple of length {len(value)} does not match the declared type "
                            f"{display(spec)}", expected=display(spec), got=f"tuple[{len(value)}]")
    items = [encode(item, s, ctx) for item, s in zip(value, specs, strict=True)]
    if shape.kind in ("set", "frozenset"):
        items.sort(key=canonical_json)  # sets have no order: sort for a stable hash
    return items


def _dict_specs(shape: Shape) -> tuple[Any, Any]:
    return (shape.args[0], shape.args[1]) if len(shape.args) == 2 else (ANY, ANY)


def _encode_dict(value: Any, spec: Any, shape: Shape, ctx: Context) -> Any:
    if not isinstance(value, dict):
        raise _mismatch(value, spec)
    key_spec, value_spec = _dict_specs(shape)
    if all(type(k) is str for k in value):
        return {k: encode(v, value_spec, ctx) for k, v in value.items()}
    # JSON objects only have string keys: other keys travel as sorted [key, value] pairs
    pairs = [[encode(k, key_spec, ctx), encode(v, value_spec, ctx)] for k, v in value.items()]
    pairs.sort(key=lambda pair: canonical_json(pair[0]))
    return pairs


def _encode_dataclass(value: Any, spec: Any, shape: Shape, ctx: Context) -> Any:
    if (not dataclasses.is_dataclass(value) or isinstance(value, type)
            or type(value).__qualname__ != _tail(shape)):
        raise _mismatch(value, spec)
    hints = field_types(type(value), ctx.namespace)
    return {f.name: encode(getattr(value, f.name), hints[f.name], ctx) for f in dataclasses.fields(value)}


def field_types(cls: type, namespace: dict[str, Any] | None) -> dict[str, Any]:
    """Resolved field annotations; `Any` where an annotation cannot be resolved."""
    try:
        hints = typing.get_type_hints(cls, localns=dict(namespace) if namespace else None)
    except Exception:  # a forward reference to a name that no longer exists
        hints = {}
    return {f.name: hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
            for f in dataclasses.fields(cls)}


def check_nested(value: Any, spec: Any, kind: str) -> None:
    ok = {"path": lambda v: isinstance(v, (str, os.PathLike)), "dataframe": is_dataframe,
          "ndarray": is_ndarray}[kind]
    if not ok(value):
        raise _mismatch(value, spec)


# -- decoding -------------------------------------------------------------------------------


def decode(data: Any, spec: Any, ctx: Context) -> Any:
    """Rebuild a value from the JSON data `encode` wrote for the same `spec`."""
    shape = shape_of(spec)
    kind = shape.kind
    if data is None:
        if kind in ("none", "any") or (kind == "union" and _allows_none(shape)):
            return None
        raise _corrupt(data, spec)
    if kind == "any":
        return data
    if kind == "union":
        arms = [arm for arm in shape.args if shape_of(arm).kind != "none"]
        if len(arms) == 1:
            return decode(data, arms[0], ctx)
        index = data.get("$union") if isinstance(data, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(arms):
            raise _corrupt(data, spec)
        return decode(data["value"], arms[index], ctx)
    if kind in ("int", "bool", "str"):
        want = {"int": int, "bool": bool, "str": str}[kind]
        if not isinstance(data, want):
            raise _corrupt(data, spec)
        return data
    if kind == "float":
        if isinstance(data, dict) and data.keys() == {"$float"}:
            return float(data["$float"])
        if not isinstance(data, (int, float)):
            raise _corrupt(data, spec)
        return data
    if kind in ("bytes", "datetime", "date", "timedelta"):
        return _decode_tagged(data, spec)
    if kind in ("list", "tuple", "set", "frozenset"):
        if not isinstance(data, list):
            raise _corrupt(data, spec)
        items = [decode(d, s, ctx) for d, s in zip(data, _element_specs(shape, len(data)), strict=True)]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict":
        key_spec, value_spec = _dict_specs(shape)
        if isinstance(data, dict):
            return {k: decode(v, value_spec, ctx) for k, v in data.items()}
        if isinstance(data, list):
            return {decode(k, key_spec, ctx): decode(v, value_spec, ctx) for k, v in data}
        raise _corrupt(data, spec)
    if kind == "dataclass":
        cls = resolve_class(shape, ctx.namespace)
        if isinstance(data, dict) and data.keys() == {"$fields"}:
            return _from_fields(cls, data["$fields"], ctx)
        return _decode_dataclass(data, spec, cls, ctx)
    if kind == "enum":
        cls = resolve_class(shape, ctx.namespace)
        if isinstance(data, dict) and data.keys() == {"$enum_name"}:
            return _member(cls, data["$enum_name"])
        return cls(data)
    if kind in NESTED_KINDS and isinstance(data, dict) and "$artifact" in data:
        if ctx.get_nested is None:
            raise _corrupt(data, spec)
        return ctx.get_nested(data["$artifact"], spec)
    raise _corrupt(data, spec)


_TAGS: dict[str, Callable[[Any], Any]] = {
    "$bytes": lambda s: base64.b64decode(s, validate=True),
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$timedelta": lambda s: dt.timedelta(seconds=s),
}


def _decode_tagged(data: Any, spec: Any) -> Any:
    if isinstance(data, dict) and len(data) == 1:
        (tag, raw), = data.items()
        if tag in _TAGS:
            return _TAGS[tag](raw)
    raise _corrupt(data, spec)


def _decode_dataclass(data: Any, spec: Any, cls: type, ctx: Context) -> Any:
    if not isinstance(data, dict):
        raise _corrupt(data, spec)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ArtifactError(f"stored {display(spec)} has fields {unknown} that class {cls.__qualname__} "
                            "no longer declares; rerun the task that produced it", fields=unknown)
    hints = field_types(cls, ctx.namespace)
    values = {name: decode(raw, hints[name], ctx) for name, raw in data.items()}
    obj = cls(**{k: v for k, v in values.items() if fields[k].init})
    for name, value in values.items():
        if not fields[name].init:  # init=False fields are set after construction
            object.__setattr__(obj, name, value)
    return obj


# -- launch parameters: plain JSON (see graph/params.py) made into the kernel's own classes -----------


def _member(cls: type, name: Any) -> Any:
    members = getattr(cls, "__members__", {})
    if name not in members:
        raise ArtifactError(f"{cls.__qualname__} has no member {name!r}; use one of {', '.join(members)}",
                            type=cls.__qualname__)
    return members[name]


def _from_fields(cls: type, fields: Any, ctx: Context) -> Any:
    if not isinstance(fields, dict):
        raise _corrupt(fields, cls)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ArtifactError(f"{cls.__qualname__} has no field {', '.join(unknown)}; its fields are "
                            f"{', '.join(declared)}", fields=unknown)
    hints = field_types(cls, ctx.namespace)
    values = {name: _from_plain(raw, hints[name], ctx) for name, raw in fields.items()}
    try:
        obj = cls(**{k: v for k, v in values.items() if declared[k].init})
    except TypeError as exc:  # a required field is missing
        raise ArtifactError(f"cannot build {cls.__qualname__} from {preview_of(fields, 80)}: {exc}") from None
    for name, value in values.items():
        if not declared[name].init:
            object.__setattr__(obj, name, value)
    return obj


def _from_plain(raw: Any, ann: Any, ctx: Context) -> Any:
    """Plain JSON data as the annotated type, where it is unambiguous; anything else is left as it is
    (the task's run-time type check then names what does not fit)."""
    shape = shape_of(ann)
    kind = shape.kind
    if raw is None:
        return None
    if kind == "union":
        for arm in (a for a in shape.args if shape_of(a).kind != "none"):
            try:
                value = _from_plain(raw, arm, ctx)
            except (ArtifactError, ValueError, TypeError, KeyError):
                continue
            if value is not raw or not isinstance(raw, (dict, list, str)):
                return value
        return raw
    if kind in ("dataclass", "enum"):
        cls = resolve_class(shape, ctx.namespace)
        if kind == "dataclass":
            return _from_fields(cls, raw, ctx) if isinstance(raw, dict) else raw
        return _member(cls, raw) if isinstance(raw, str) and raw in getattr(cls, "__members__", {}) else cls(raw)
    if isinstance(raw, str) and kind in ("date", "datetime"):
        return (dt.datetime if kind == "datetime" else dt.date).fromisoformat(raw)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and kind == "timedelta":
        return dt.timedelta(seconds=raw)
    if isinstance(raw, str) and kind == "path":
        return pathlib.Path(raw)
    if kind == "float" and (isinstance(raw, int) and not isinstance(raw, bool)):
        return float(raw)
    if kind in ("list", "tuple", "set", "frozenset") and isinstance(raw, list):
        items = [_from_plain(v, s, ctx) for v, s in zip(raw, _element_specs(shape, len(raw)), strict=False)]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict" and isinstance(raw, dict):
        key_spec, value_spec = _dict_specs(shape)
        numeric_keys = shape_of(key_spec).kind in ("int", "float")
        return {(json.loads(k) if numeric_keys else k): _from_plain(v, value_spec, ctx) for k, v in raw.items()}
    return raw


def resolve_class(shape: Shape, namespace: dict[str, Any] | None) -> type:
    """The live class for a setup-cell dataclass/enum: from the kernel namespace, by name."""
    if shape.cls is not None:
        return shape.cls
    dotted = shape.name.removeprefix("__setup__.")
    head, *rest = dotted.split(".")
    obj = (namespace or {}).get(head)
    if obj is None and rest:  # `module.Class` from an already-imported module
        obj, rest = _imported(dotted)
    for part in rest:
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ArtifactError(f"cannot rebuild {shape.name}: class `{dotted}` is not defined in the "
                            "kernel namespace; run the setup cells that define it", type=shape.name)
    return obj


def _imported(dotted: str) -> tuple[Any, list[str]]:
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            return module, parts[cut:]
    return None, []


def _corrupt(data: Any, spec: Any) -> ArtifactError:
    return ArtifactError(f"stored data {preview_of(data, 80)} cannot be read as {display(spec)}; "
                         "the artifact was written for another type", expected=display(spec))
