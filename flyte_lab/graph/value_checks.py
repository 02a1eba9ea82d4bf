"""Check live values against declared (evaluated) annotations, per DESIGN.md section 2.

Runs in two processes: a task's kernel (`engine/task_runtime`, checking loaded
inputs and saved outputs) and the user's notebook kernel (the `%%flyte_task`
magic), so it lives beside the declared types both sides may import. Stdlib
only at import (typeguard is imported when an exotic annotation needs it,
pandera never), to keep a task kernel's start light.

Containers, unions and scalars are walked here rather than handed whole to
typeguard for three reasons: the contract forbids the silent `int -> float`
that typeguard allows, a failure should name the offending element
(`coef[2]`), and `pandera.typing.DataFrame[Schema]` must be validated with
pandera inside containers too. Anything else (Callable, Protocol, TypedDict,
...) goes to `typeguard.check_type`.
"""

from __future__ import annotations

import collections.abc as cabc
import types
import typing
from typing import Any

_MAX_REPR = 60
_SEQUENCES: tuple[Any, ...] = (list, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Set,
                              cabc.MutableSet, cabc.Collection, cabc.Iterable)
_MAPPINGS: tuple[Any, ...] = (dict, cabc.Mapping, cabc.MutableMapping)


def check_value(value: Any, annotation: Any, what: str = "value") -> str | None:
    """None when `value` fits `annotation`, else the reason, e.g. "the value is `str` ('abc')".

    `what` names the value in the reason when an element is at fault
    (`coef[2]` for `what="coef"`). Compose the full message with
    `type_error_message`.
    """
    return _mismatch(value, annotation, what, top=True)


def type_error_message(task: str, role: str, name: str, declared: str, reason: str) -> str:
    """"task `t`: input `x` is declared `int` but the value is `str` ('abc')": one wording everywhere."""
    return f"task `{task}`: {role} `{name}` is declared `{declared}` but {reason}"


def describe(value: Any) -> str:
    """"`str` ('abc')": the type and a short, one-line repr of a value."""
    kind = f"`{type(value).__name__}`"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the type error
        return kind
    if "\n" in text:  # DataFrames, arrays: the shape says more than a cut-off table
        shape = getattr(value, "shape", None)
        return f"{kind} (shape {tuple(shape)})" if shape is not None else kind
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR - 1] + "…"
    return f"{kind} ({text})"


def type_name(annotation: Any) -> str:
    """Readable text for an evaluated annotation, when the header text is not at hand."""
    if annotation is type(None) or annotation is None:
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _subject(path: str, top: bool) -> str:
    if top:
        return "the value"
    return path if path.startswith("an item of") else f"`{path}`"


def _is_a(value: Any, path: str, top: bool) -> str:
    return f"{_subject(path, top)} is {describe(value)}"


def _mismatch(value: Any, ann: Any, path: str, top: bool) -> str | None:
    if ann is Any or ann is object or isinstance(ann, str | typing.ForwardRef | typing.TypeVar):
        return None  # unresolvable or unconstrained: nothing to check
    if ann is None or ann is type(None):
        return None if value is None else _is_a(value, path, top)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _mismatch(value, args[0], path, top)
    if origin is typing.Union or origin is types.UnionType:
        return _union_mismatch(value, args, path, top)
    if origin is typing.Literal:
        ok = any(value == a and type(value) is type(a) for a in args)
        return None if ok else _is_a(value, path, top) + f", not one of {', '.join(map(repr, args))}"
    if _is_pandera_frame(origin):
        return _schema_mismatch(value, origin, args, path, top)
    if ann is float:  # no silent int -> float (typeguard would accept an int)
        return None if isinstance(value, float) else _is_a(value, path, top)
    if ann is int:  # True is an int to Python, not to a typed pipeline
        return None if isinstance(value, int) and not isinstance(value, bool) else _is_a(value, path, top)
    if origin is tuple:
        return _tuple_mismatch(value, args, path, top)
    if origin in _MAPPINGS:
        return _mapping_mismatch(value, origin, args, path, top)
    if origin in _SEQUENCES:
        return _sequence_mismatch(value, origin, args, path, top)
    if isinstance(ann, type):
        return None if isinstance(value, ann) else _is_a(value, path, top)
    return _typeguard_mismatch(value, ann, path, top)


def _union_mismatch(value: Any, args: tuple[Any, ...], path: str, top: bool) -> str | None:
    if any(_mismatch(value, member, path, top) is None for member in args):
        return None
    if value is not None:
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[T]: the reason inside T is the useful one
            return _mismatch(value, members[0], path, top)
    return _is_a(value, path, top)


def _tuple_mismatch(value: Any, args: tuple[Any, ...], path: str, top: bool) -> str | None:
    if not isinstance(value, tuple):
        return _is_a(value, path, top)
    if not args:
        return None
    if len(args) == 2 and args[1] is Ellipsis:
        return _each(enumerate(value), args[0], path)
    if args == ((),):  # tuple[()]: the empty tuple
        args = ()
    if len(value) != len(args):
        return _is_a(value, path, top) + f" with {len(value)} items, not {len(args)}"
    for i, (item, item_ann) in enumerate(zip(value, args, strict=True)):
        reason = _mismatch(item, item_ann, f"{path}[{i}]", top=False)
        if reason:
            return reason
    return None


def _sequence_mismatch(value: Any, origin: Any, args: tuple[Any, ...], path: str, top: bool) -> str | None:
    if not isinstance(value, origin) or (origin in (cabc.Sequence, cabc.Iterable) and isinstance(value, str)):
        return _is_a(value, path, top)
    if not args:
        return None
    if isinstance(value, cabc.Set):  # unordered: no index to name
        for item in value:
            reason = _mismatch(item, args[0], f"an item of `{path}`", top=False)
            if reason:
                return reason
        return None
    if not isinstance(value, cabc.Sequence):
        return None  # a one-shot iterable: checking it would consume it
    return _each(enumerate(value), args[0], path)


def _each(items: Any, ann: Any, path: str) -> str | None:
    for i, item in items:
        reason = _mismatch(item, ann, f"{path}[{i}]", top=False)
        if reason:
            return reason
    return None


def _mapping_mismatch(value: Any, origin: Any, args: tuple[Any, ...], path: str, top: bool) -> str | None:
    if not isinstance(value, origin):
        return _is_a(value, path, top)
    if len(args) != 2:
        return None
    key_ann, value_ann = args
    for key, item in value.items():
        if _mismatch(key, key_ann, path, top=False):
            return f"key {key!r} of `{path}` is `{type(key).__name__}`"
        reason = _mismatch(item, value_ann, f"{path}[{key!r}]", top=False)
        if reason:
            return reason
    return None


def _is_pandera_frame(origin: Any) -> bool:
    """`pandera.typing.DataFrame` (any backend) without importing pandera."""
    return (isinstance(origin, type) and origin.__name__ == "DataFrame"
            and origin.__module__.startswith("pandera.typing"))


def _frame_base(origin: type) -> type:
    """The real DataFrame class behind pandera's generic (`pandas.DataFrame` for the pandas backend)."""
    for base in origin.__mro__[1:]:
        if base.__name__ == "DataFrame" and not base.__module__.startswith("pandera"):
            return base
    return origin


def _schema_mismatch(value: Any, origin: type, args: tuple[Any, ...], path: str, top: bool) -> str | None:
    if not isinstance(value, _frame_base(origin)):
        return _is_a(value, path, top)
    if not args or not hasattr(args[0], "validate"):
        return None
    schema = args[0]
    name = getattr(schema, "__name__", None) or getattr(schema, "name", None) or "the schema"
    try:
        schema.validate(value)
    except Exception as exc:  # pandera's SchemaError / SchemaErrors; any failure of validate is a mismatch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{_subject(path, top)} does not match schema `{name}`: {first}"
    return None


def _typeguard_mismatch(value: Any, ann: Any, path: str, top: bool) -> str | None:
    import typeguard  # lazy: only exotic annotations need it

    try:
        typeguard.check_type(value, ann,
                             collection_check_strategy=typeguard.CollectionCheckStrategy.ALL_ITEMS)
    except typeguard.TypeCheckError as exc:
        return f"{_is_a(value, path, top)}: {exc}"
    except TypeError:
        return None  # an annotation typeguard cannot check: do not block the user's cell on it
    return None
