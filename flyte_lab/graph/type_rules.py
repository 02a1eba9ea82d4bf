"""Whether a producer's declared type may feed a consumer's, per DESIGN.md section 2.

Exact match after aliases; `Optional[T]` accepts `T`; `Any` accepts
everything; generics compare element-wise; no `int -> float`; pandera
schemas compare column sets.
"""

from __future__ import annotations

from flyte_lab.graph.model import TypeRef

# Types the artifact layer has a codec for; anything else travels by cloudpickle.
KNOWN_TYPES = {
    "int", "float", "str", "bool", "bytes", "NoneType", "list", "dict", "tuple", "set", "frozenset",
    "typing.Any", "typing.Optional", "typing.Union", "typing.Literal", "...",
    "datetime.datetime", "datetime.date", "datetime.timedelta", "pathlib.Path",
    "pandas.DataFrame", "pandera.typing.DataFrame", "numpy.ndarray",
}


def mismatch(produced: TypeRef, consumed: TypeRef) -> str | None:
    """None when `produced` can feed `consumed`, else the reason (for the message)."""
    if consumed.name == "typing.Any" or produced.name == "typing.Any":
        return None
    if consumed.name == "typing.Optional":
        if produced.name == "NoneType":
            return None
        inner = produced.args[0] if produced.name == "typing.Optional" else produced
        return mismatch(inner, consumed.args[0])
    if produced.name == "typing.Optional":
        return "the output may be None but the input does not accept None"
    if consumed.name == "typing.Union":
        members = produced.args if produced.name == "typing.Union" else (produced,)
        for member in members:
            if all(mismatch(member, option) for option in consumed.args):
                return f"`{member.canonical()}` is not one of the accepted types"
        return None
    if produced.name == "typing.Union":
        return "the output may be of several types; the input accepts only one"
    if produced.name == "pandera.typing.DataFrame" and consumed.name == "pandas.DataFrame":
        return None
    if produced.name == "pandas.DataFrame" and consumed.name == "pandera.typing.DataFrame":
        return None  # the schema is checked on the value at run time
    if produced.name != consumed.name:
        return "different types"
    if produced.name == "pandera.typing.DataFrame":
        return _schema_mismatch(produced, consumed)
    if not produced.args or not consumed.args:
        return None  # a bare `list` is `list[Any]`
    if len(produced.args) != len(consumed.args):
        return "different numbers of type parameters"
    for p_arg, c_arg in zip(produced.args, consumed.args, strict=True):
        reason = mismatch(p_arg, c_arg)
        if reason:
            return reason
    return None


def _schema_mismatch(produced: TypeRef, consumed: TypeRef) -> str | None:
    if not produced.args or not consumed.args or produced.args[0].name == consumed.args[0].name:
        return None
    have, need = produced.columns, consumed.columns
    if have is None or need is None:
        return None  # columns unknown statically; pandera checks them at run time
    missing = sorted(need - have)
    if missing:
        return f"columns {', '.join(missing)} required by the input schema are not in the output schema"
    return None


def pickled_types(ref: TypeRef) -> list[str]:
    """Qualified names inside `ref` that have no codec and will travel by cloudpickle."""
    out: list[str] = []
    if ref.name not in KNOWN_TYPES and ref.defined_as not in ("dataclass", "enum", "schema"):
        out.append(ref.canonical())
    for arg in ref.args:
        if ref.name == "pandera.typing.DataFrame":
            continue
        out.extend(pickled_types(arg))
    return out


def as_list(ref: TypeRef) -> TypeRef:
    """`list[ref]`: how a `--map-over` task's output reaches downstream tasks."""
    return TypeRef("list", (ref,), f"list[{ref.display()}]")
