"""Launch parameters: every type's refusal reads as one clear line, and stored values round-trip exactly
(what `resolve_params` produced is what `decode_values` gives back), so `resume` can use them."""

from __future__ import annotations

import datetime as dt
import json
import math
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyte_lab.cli.main import main
from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.errors import ParameterError
from flyte_lab.graph.model import TypeRef, Workflow, WorkflowInput
from flyte_lab.graph.params import coerce
from flyte_lab.graph.validate import decode_values, encode_values, graph_json, resolve_params
from tests.conftest import NOTEBOOKS
from tests.test_artifacts import KEY, SHAPE, setup_namespace


def T(name: str, *args: TypeRef, **kw: Any) -> TypeRef:
    return TypeRef(name, tuple(args), **kw)


INT, FLOAT, STR, BOOL = T("int"), T("float"), T("str"), T("bool")
DATE, DATETIME, DELTA, PATH = T("datetime.date"), T("datetime.datetime"), T("datetime.timedelta"), T("pathlib.Path")
COLOR = T("__setup__.Color", defined_as="enum", text="Color")
POINT = T("__setup__.Point", defined_as="dataclass", text="Point")


def _wf(**types: TypeRef) -> Workflow:
    return Workflow(path="nb.ipynb", workflow_inputs={
        name: WorkflowInput(name, ref, False, None, ("t",)) for name, ref in types.items()})


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "text", "message"), [
    (INT, "abc", "-p v=abc: expects int: not a whole number"),
    (INT, "1.5", "-p v=1.5: expects int: not a whole number"),
    (INT, "true", "-p v=true: expects int: not a whole number"),
    (FLOAT, "x", "-p v=x: expects float: not a number"),
    (BOOL, "maybe", "-p v=maybe: expects bool: use true or false"),
    (DATE, "2024-13-01", "-p v=2024-13-01: expects datetime.date: use a date like 2024-01-02"),
    (DATETIME, "noon", "-p v=noon: expects datetime.datetime: use an ISO 8601 time like 2024-01-02T13:45:00"),
    (DELTA, "soon", "-p v=soon: expects datetime.timedelta: use seconds or a duration like 90, 30s, 10m or 2h"),
    (T("list", INT), "abc", "-p v=abc: expects list[int]: write a list as JSON or a Python literal, e.g. [1, 2]"),
    (T("list", INT), "[1, 'a']",
     "-p v=[1, 'a']: expects list[int]: element 1 (a) does not fit int: not a whole number"),
    (T("tuple", INT, INT), "[1]", "-p v=[1]: expects tuple[int, int]: needs 2 elements, got 1"),
    (T("set", INT), "{", "-p v={: expects set[int]: write a set as JSON or a Python literal, e.g. [1, 2]"),
    (T("dict", STR, INT), "[3]", '-p v=[3]: expects dict[str, int]: write a dict as JSON or a Python literal, '
                                 'e.g. {"a": 1}'),
    (T("dict", INT, INT), '{"x": 1}', '-p v={"x": 1}: expects dict[int, int]: entry x: not a whole number'),
    (T("typing.Optional", INT, text="Optional[int]"), "abc", "-p v=abc: expects Optional[int]: not a whole number"),
    (T("types.UnionType", INT, FLOAT, text="int | float"), "abc",
     "-p v=abc: expects int | float: matches none of int, float"),
    (COLOR, "not a name", "-p v=not a name: expects Color: use the name of one of its members, e.g. RED"),
    (POINT, "[1, 2]", '-p v=[1, 2]: expects Point: write its fields as a JSON object, e.g. {"x": 1}'),
    (T("NoneType"), "1", "-p v=1: expects NoneType: only None"),
    (T("pandas.DataFrame", text="pd.DataFrame"), "x",
     "-p v=x: expects pd.DataFrame: values of type pd.DataFrame cannot be given with -p"),
])
def test_every_type_refuses_in_the_users_words(ref: TypeRef, text: str, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        coerce(text, ref, "v")
    assert info.value.message == message
    assert "<ast" not in message and " at 0x" not in message


def test_bad_int_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "n=abc"]) == 2
    assert capsys.readouterr().err == "flyte-lab: error: -p n=abc: expects int: not a whole number\n"


# -- stored values ----------------------------------------------------------------------------------


def test_a_date_parameter_is_stored_readably_and_comes_back() -> None:
    wf = _wf(d=DATE, p=PATH, c=COLOR, at=DATETIME, t=DELTA, pt=POINT)
    values = resolve_params(wf, {"d": "2024-01-02", "p": "data/in.csv", "c": "RED",
                                 "at": "2024-01-02T13:45:00+02:00", "t": "10m", "pt": '{"x": 1, "y": 2.5}'})
    stored = encode_values(wf, values)
    assert stored == {"d": "2024-01-02", "p": "data/in.csv", "c": "RED", "at": "2024-01-02T13:45:00+02:00",
                      "t": 600.0, "pt": {"x": 1, "y": 2.5}}
    assert decode_values(wf, json.loads(json.dumps(stored))) == values
    with pytest.raises(ParameterError, match="no longer a workflow input"):
        decode_values(wf, {"gone": 1})


def test_defaults_in_validate_json_are_readable() -> None:
    wf = _wf(d=DATE)
    wf.workflow_inputs["d"] = WorkflowInput("d", DATE, True, dt.date(2024, 1, 2), ("t",))
    assert graph_json(wf)["workflow_inputs"]["d"] == {"type": "datetime.date", "default": "2024-01-02"}


def test_the_task_receives_typed_enum_and_dataclass_values(tmp_path: Path) -> None:
    """Setup-cell classes exist only in kernels: the driver's member name and field dict become real objects
    there, each field converted to its annotation."""
    store = ArtifactStore(str(tmp_path / "artifacts"), KEY)
    wf = _wf(c=COLOR, s=SHAPE)
    values = resolve_params(wf, {"c": "BLUE", "s": json.dumps(
        {"name": "tri", "points": [{"x": 0, "y": 1.5}], "color": "RED", "at": "2024-01-02", "tags": {"k": 1}})})
    ns = setup_namespace()
    color = store.get(store.put(values["c"], COLOR).uri, COLOR, ns)
    assert color is ns["Color"].BLUE
    shape = store.get(store.put(values["s"], SHAPE).uri, SHAPE, ns)
    assert type(shape) is ns["Shape"] and shape.points == [ns["Point"](0.0, 1.5)]
    assert type(shape.points[0].x) is float and shape.color is ns["Color"].RED
    assert shape.at == dt.date(2024, 1, 2) and shape.tags == {"k": 1}
    from flyte_lab.errors import ArtifactError

    with pytest.raises(ArtifactError, match="Color has no member 'GREEN'; use one of RED, BLUE"):
        store.get(store.put(coerce("GREEN", COLOR, "c"), COLOR).uri, COLOR, ns)
    with pytest.raises(ArtifactError, match="has no field z"):
        store.get(store.put({"x": 1, "y": 2, "z": 3}, POINT).uri, POINT, ns)


# -- the round-trip property ------------------------------------------------------------------------

_ident = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
_offsets = st.none() | st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


def _leaf(hashable: bool = False) -> st.SearchStrategy[tuple[TypeRef, Any]]:
    options = [
        st.tuples(st.just(INT), st.integers()),
        st.tuples(st.just(FLOAT), st.floats(allow_nan=False) | st.integers(-100, 100)),
        st.tuples(st.just(STR), st.text(max_size=8)),
        st.tuples(st.just(BOOL), st.booleans()),
        st.tuples(st.just(DATE), st.dates()),
        st.tuples(st.just(DATETIME), st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), _offsets)),
        st.tuples(st.just(DELTA), st.timedeltas(min_value=dt.timedelta(days=-999), max_value=dt.timedelta(days=999))),
        st.tuples(st.just(PATH), st.text(string.ascii_letters + "/._-", min_size=1, max_size=12).map(Path)),
        st.tuples(st.just(COLOR), st.sampled_from(["RED", "BLUE"])),
    ]
    if not hashable:
        options.append(st.tuples(st.just(POINT), st.dictionaries(_ident, _plain_json, max_size=3)))
        options.append(st.tuples(st.just(T("typing.Any")), _plain_json.filter(lambda v: not isinstance(v, str))))
    return st.one_of(options)


@st.composite
def _typed(draw: st.DrawFn, depth: int = 2) -> tuple[TypeRef, Any]:
    if depth == 0 or draw(st.booleans()):
        return draw(_leaf())
    shape = draw(st.sampled_from(["list", "set", "tuple", "tuple...", "dict_str", "dict_int", "dict_date",
                                  "optional"]))
    if shape == "list":
        items = draw(st.lists(_typed(depth - 1), max_size=3))
        if not items:
            return T("list", INT), []
        ref = items[0][0]
        return T("list", ref), [v for r, v in items if r == ref]
    if shape == "set":
        ref, _v = draw(_leaf(hashable=True))
        values = draw(st.lists(_leaf(hashable=True).filter(lambda tv: tv[0] == ref), max_size=3))
        return T("set", ref), {v for _r, v in values}
    if shape == "tuple":
        parts = draw(st.lists(_typed(depth - 1), min_size=1, max_size=3))
        return T("tuple", *(r for r, _v in parts)), tuple(v for _r, v in parts)
    if shape == "tuple...":
        ref, value = draw(_typed(depth - 1))
        return T("tuple", ref, T("...")), (value,) * draw(st.integers(0, 3))
    if shape.startswith("dict"):
        ref, value = draw(_typed(depth - 1))
        keys = {"dict_str": st.text(max_size=5), "dict_int": st.integers(), "dict_date": st.dates()}[shape]
        key_ref = {"dict_str": STR, "dict_int": INT, "dict_date": DATE}[shape]
        return T("dict", key_ref, ref), {k: value for k in draw(st.lists(keys, max_size=3))}
    ref, value = draw(_typed(depth - 1))
    return T("typing.Optional", ref), draw(st.sampled_from([None, value]))


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@settings(max_examples=400, deadline=None)
@given(_typed())
def test_stored_parameters_round_trip_exactly(typed: tuple[TypeRef, Any]) -> None:
    ref, raw = typed
    wf = _wf(v=ref)
    resolved = resolve_params(wf, {"v": raw})
    stored = json.loads(json.dumps(encode_values(wf, resolved), allow_nan=False))  # plain JSON, no NaN tokens
    back = decode_values(wf, stored)
    assert _same(back["v"], resolved["v"]), (ref.canonical(), resolved, stored, back)
    again = encode_values(wf, back)
    assert again == stored


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_non_finite_floats_round_trip(text: str) -> None:
    wf = _wf(v=FLOAT)
    value = float(text)
    stored = json.loads(json.dumps(encode_values(wf, {"v": value}), allow_nan=False))
    assert stored == {"v": {"nan": "NaN", "inf": "Infinity"}[text]}
    assert _same(decode_values(wf, stored)["v"], value)
