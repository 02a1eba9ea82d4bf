"""The typed artifact store: every codec round-trips, nothing untrusted is unpickled,
and no URI reaches outside the store's root."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import pickle
import stat
import sys
import threading
import types
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyte_lab.engine.artifacts import CODECS, ArtifactRef, ArtifactStore, load_or_create_key
from flyte_lab.engine.codecs.registry import Codec
from flyte_lab.errors import ArtifactError, TaskTypeError
from flyte_lab.graph.model import TypeRef
from flyte_lab.private_fs import write_private

KEY = b"k" * 32


def T(name: str, *args: TypeRef, **kw) -> TypeRef:
    return TypeRef(name, tuple(args), **kw)


INT, FLOAT, STR, BOOL, ANY = T("int"), T("float"), T("str"), T("bool"), T("typing.Any")


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"), KEY, allow_pickle=True)  # as a task kernel opens it
        return
    root = f"memory://flyte-lab-test-{uuid.uuid4().hex}"
    yield ArtifactStore(root, KEY, cache_dir=str(tmp_path / "cache"), allow_pickle=True)
    _drop_memory_root(root)


def _drop_memory_root(root: str) -> None:
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory:/")
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def local(tmp_path) -> ArtifactStore:
    return ArtifactStore(f"file://{tmp_path}/artifacts", KEY, allow_pickle=True)


# -- JSON ------------------------------------------------------------------------------------

JSON_CASES = [
    (3, INT),
    (True, BOOL),
    (2.5, FLOAT),
    (float("inf"), FLOAT),
    ("héllo", STR),
    (b"\x00\xffbytes", T("bytes")),
    (None, T("NoneType")),
    (None, T("typing.Optional", INT)),
    (7, T("typing.Optional", INT)),
    (None, T("types.UnionType", INT, T("NoneType"))),
    ("x", T("typing.Union", INT, STR)),
    (4, T("typing.Union", INT, STR)),
    ([1, 2, 3], T("list", INT)),
    ([[1.5], [], [2.0, None]], T("list", T("list", T("typing.Optional", FLOAT)))),
    ({"a": [1.0, 2.0], "b": []}, T("dict", STR, T("list", FLOAT))),
    ({1: "one", 2: "two"}, T("dict", INT, STR)),
    ({(1, 2): {3}}, T("dict", T("tuple", INT, INT), T("set", INT))),
    ((1, "a"), T("tuple", INT, STR)),
    ((1, 2, 3), T("tuple", INT, T("..."))),
    ({3, 1, 2}, T("set", INT)),
    (frozenset({"a", "b"}), T("frozenset", STR)),
    ([1, "a", {"k": None}], T("list")),
    ({1: [2]}, T("dict")),
    ({"nested": [1, 2.5, "x", None, True, {"deep": []}]}, ANY),
    (dt.datetime(2024, 5, 17, 13, 45, 1, 250), T("datetime.datetime")),
    (dt.datetime(2024, 5, 17, 13, 45, tzinfo=dt.timezone(dt.timedelta(hours=2))), T("datetime.datetime")),
    (dt.date(2024, 2, 29), T("datetime.date")),
    (dt.timedelta(days=3, seconds=7, microseconds=11), T("datetime.timedelta")),
    (dt.timedelta(hours=1), T("datetime.timedelta")),
]


def _case_id(x: object) -> str:
    return x.canonical() if isinstance(x, TypeRef) else ""


@pytest.mark.parametrize(("value", "ref"), JSON_CASES, ids=_case_id)
def test_json_round_trip(store, value, ref):
    art = store.put(value, ref)
    assert art.codec == "json" and art.warning is None
    assert art.uri.endswith(".json") and art.uri.startswith(store.root_url + "/")
    back = store.get(art.uri, ref)
    assert back == value and type(back) is type(value)
    if isinstance(value, dict):
        for k in value:  # keys keep their types (int, tuple), not JSON's strings
            assert k in back


def test_nan_round_trips(store):
    art = store.put([float("nan"), 1.0], T("list", FLOAT))
    back = store.get(art.uri, T("list", FLOAT))
    assert math.isnan(back[0]) and back[1] == 1.0


def test_ref_fields_and_preview(store):
    art = store.put({"a": 1}, T("dict", STR, INT))
    assert isinstance(art, ArtifactRef)
    assert art.preview == "{'a': 1}"
    assert art.content_hash == art.uri.rsplit("/", 1)[1].split(".")[0]
    assert set(art.as_json()) == {"uri", "codec", "content_hash", "preview"}
    big = store.put(list(range(100_000)), T("list", INT))
    assert len(big.preview) <= 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=5), kids, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def mem_store():
    root = f"memory://flyte-lab-hyp-{uuid.uuid4().hex}"
    yield ArtifactStore(root, KEY, allow_pickle=True)
    _drop_memory_root(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values)
def test_any_plain_data_round_trips_as_json(mem_store, value):
    art = mem_store.put(value, ANY)
    assert art.codec == "json"
    assert mem_store.get(art.uri, ANY) == value


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(), st.lists(st.tuples(st.text(max_size=4), st.booleans()), max_size=3)))
def test_typed_nested_generics_round_trip(mem_store, value):
    ref = T("dict", INT, T("list", T("tuple", STR, BOOL)))
    art = mem_store.put(value, ref)
    assert mem_store.get(art.uri, ref) == value


def test_any_with_non_json_value_is_pickled(store):
    art = store.put((1, 2), ANY)
    assert art.codec == "pickle" and "tuple" in art.warning
    assert store.get(art.uri, ANY) == (1, 2)


def test_wrong_type_is_refused(store):
    with pytest.raises(TaskTypeError, match="str does not match the declared type int"):
        store.put("3", INT)
    with pytest.raises(TaskTypeError):
        store.put([1, "x"], T("list", INT))
    with pytest.raises(TaskTypeError):
        store.put((1, 2, 3), T("tuple", INT, INT))
    with pytest.raises(TaskTypeError):
        store.put(None, INT)


def test_reading_with_another_type_is_an_artifact_error(store):
    art = store.put("text", STR)
    with pytest.raises(ArtifactError, match="cannot be read as int"):
        store.get(art.uri, INT)


# -- dataclasses and enums, defined the way a setup cell defines them --------------------------

SETUP = '''
from __future__ import annotations
import dataclasses, enum, datetime
from typing import Optional

class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"

@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float

@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color
    at: Optional[datetime.date] = None
    tags: dict[str, int] = dataclasses.field(default_factory=dict)
    area: float = dataclasses.field(init=False, default=0.0)
'''


def setup_namespace() -> dict:
    """A fresh kernel namespace (fresh class objects): like IPython, a module's own dict."""
    module = types.ModuleType(f"kernel_{uuid.uuid4().hex}")
    sys.modules[module.__name__] = module
    exec(SETUP, module.__dict__)
    return module.__dict__


SHAPE = T("__setup__.Shape", defined_as="dataclass")
COLOR = T("__setup__.Color", defined_as="enum")


def test_dataclass_with_nested_dataclass_round_trips(store):
    ns = setup_namespace()
    shape = ns["Shape"]("tri", [ns["Point"](0.0, 1.5), ns["Point"](2, 3)], ns["Color"].BLUE,
                        dt.date(2024, 1, 2), {"k": 1})
    shape.area = 4.5
    art = store.put(shape, SHAPE)
    assert art.codec == "json" and art.warning is None
    fresh = setup_namespace()  # e.g. the consumer task's kernel
    back = store.get(art.uri, SHAPE, fresh)
    assert type(back) is fresh["Shape"] and type(back.points[0]) is fresh["Point"]
    assert back.points == [fresh["Point"](0.0, 1.5), fresh["Point"](2, 3)]
    assert back.color is fresh["Color"].BLUE
    assert (back.name, back.at, back.tags, back.area) == ("tri", dt.date(2024, 1, 2), {"k": 1}, 4.5)


def test_dataclass_from_a_plain_namespace_dict(store):
    """Classes whose module is not importable resolve their field types through `namespace`."""
    ns = {"__name__": "__main__"}  # __main__ is pytest's module here, not this namespace
    exec(SETUP, ns)
    shape = ns["Shape"]("sq", [ns["Point"](1.0, 2.0)], ns["Color"].RED)
    art = store.put(shape, SHAPE, namespace=ns)
    assert art.codec == "json"
    assert store.get(art.uri, SHAPE, ns) == shape


def test_enum_round_trips_by_value(store):
    ns = setup_namespace()
    art = store.put(ns["Color"].RED, COLOR)
    assert json.loads(store.fs.cat_file(store.path_of(art.uri.split(store.root_url + "/")[1]))) == "red"
    assert store.get(art.uri, COLOR, ns) is ns["Color"].RED
    art = store.put([ns["Color"].RED], T("list", COLOR))
    assert store.get(art.uri, T("list", COLOR), ns) == [ns["Color"].RED]


def test_dataclass_without_its_class_in_the_namespace(store):
    ns = setup_namespace()
    art = store.put(ns["Point"](1, 2), T("__setup__.Point", defined_as="dataclass"))
    with pytest.raises(ArtifactError, match="run the setup cells"):
        store.get(art.uri, T("__setup__.Point", defined_as="dataclass"), {})


@dataclass
class Holder:
    blob: object
    values: list[int] = field(default_factory=list)


def test_dataclass_with_a_non_json_field_falls_back_to_pickle(store):
    ref = T("__setup__.Holder", defined_as="dataclass")
    art = store.put(Holder(blob=Widget(2)), ref)
    assert art.codec == "pickle" and "Widget" in art.warning
    assert store.get(art.uri, ref) == Holder(blob=Widget(2))


# -- DataFrames, arrays, nested artifacts ------------------------------------------------------


def test_dataframe_round_trips_with_index_and_column_order(store):
    df = pd.DataFrame({"z": [3, 1, 2], "a": ["x", "y", None], "m": [0.5, np.nan, 2.0]},
                      index=pd.Index(["r1", "r2", "r3"], name="row"))
    art = store.put(df, T("pandas.DataFrame"))
    assert art.codec == "parquet" and art.preview == "DataFrame 3x3 [z, a, m]"
    back = store.get(art.uri, T("pandas.DataFrame"))
    assert back.equals(df) and list(back.columns) == ["z", "a", "m"] and back.index.name == "row"
    ranged = pd.DataFrame({"b": [1.0, 2.0], "a": [3, 4]})
    schema = T("pandera.typing.DataFrame", T("__setup__.Schema", defined_as="schema"))
    back = store.get(store.put(ranged, schema).uri, schema)
    assert back.equals(ranged) and isinstance(back.index, pd.RangeIndex)


def test_optional_dataframe_and_none(store):
    ref = T("typing.Optional", T("pandas.DataFrame"))
    df = pd.DataFrame({"x": [1]})
    assert store.put(df, ref).codec == "parquet"
    none = store.put(None, ref)
    assert none.codec == "json" and store.get(none.uri, ref) is None


def test_ndarray_round_trips(store):
    arr = np.arange(12, dtype="float64").reshape(3, 4)
    art = store.put(arr, T("numpy.ndarray"))
    assert art.codec == "npy" and art.preview == "ndarray float64 (3, 4)"
    back = store.get(art.uri, T("numpy.ndarray"))
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_object_array_is_pickled_with_a_warning(store):
    arr = np.array([{"a": 1}, None], dtype=object)
    art = store.put(arr, T("numpy.ndarray"))
    assert art.codec == "pickle" and "numpy.ndarray" in art.warning
    assert list(store.get(art.uri, T("numpy.ndarray"))) == [{"a": 1}, None]


def test_list_of_dataframes_stores_each_as_parquet(store):
    frames = [pd.DataFrame({"x": [i, i + 1]}) for i in range(3)]
    ref = T("list", T("pandas.DataFrame"))
    art = store.put(frames, ref)
    assert art.codec == "json"
    back = store.get(art.uri, ref)
    assert len(back) == 3 and all(b.equals(f) for b, f in zip(back, frames))


# -- paths -------------------------------------------------------------------------------------


def test_file_path_round_trips(store, tmp_path):
    src = tmp_path / "in" / "report.csv"
    src.parent.mkdir()
    src.write_text("a,b\n1,2\n")
    art = store.put(src, T("pathlib.Path"))
    assert art.codec == "path" and art.preview == "report.csv"
    src.write_text("changed")  # the artifact is a copy, not a reference
    back = store.get(art.uri, T("pathlib.Path"))
    assert isinstance(back, Path) and back.name == "report.csv" and back.read_text() == "a,b\n1,2\n"
    assert store.exists(art.uri)


def test_an_empty_folder_round_trips(store, tmp_path):
    src = tmp_path / "nothing-yet"
    src.mkdir()
    art = store.put(src, T("pathlib.Path"))
    back = store.get(art.uri, T("pathlib.Path"))
    assert back.name == "nothing-yet" and back.is_dir() and not any(back.iterdir())


def test_folder_path_round_trips(store, tmp_path):
    src = tmp_path / "model"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "weights.bin").write_bytes(os.urandom(3000))
    (src / "sub" / "deeper" / "cfg.json").write_text("{}")
    art = store.put(str(src), T("pathlib.Path"))
    assert art.preview == "model/ (2 files)"
    back = store.get(art.uri, T("pathlib.Path"))
    assert back.name == "model" and back.is_dir()
    assert (back / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    assert (back / "sub" / "deeper" / "cfg.json").read_text() == "{}"
    assert (back / "empty").is_dir()
    assert store.put(src, T("pathlib.Path")).uri == art.uri  # same tree, same artifact
    (src / "new.txt").write_text("x")
    assert store.put(src, T("pathlib.Path")).uri != art.uri


def test_missing_path_is_refused(store, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        store.put(tmp_path / "nope.txt", T("pathlib.Path"))


def test_tampered_local_path_artifact_is_refused(local, tmp_path):
    """Files are checked by sha256, not by size: a same-size edit of the stored file is caught."""
    src = tmp_path / "f.txt"
    src.write_text("hello")
    art = local.put(src, T("pathlib.Path"))
    key = art.uri.removeprefix(local.root_url + "/")
    stored = Path(local.path_of(key)) / "data" / "f.txt"
    stored.write_text("jello")
    with pytest.raises(ArtifactError, match="missing or changed"):
        local.get(art.uri, T("pathlib.Path"))


# -- pickle and its signature -------------------------------------------------------------------


@dataclass
class Widget:
    size: int


def _touch(path: str) -> str:
    Path(path).write_text("payload ran")
    return "ran"


class Evil:
    """Unpickling this creates a file: proof of whether a payload was ever loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch, (str(self.marker),))


WIDGET = T("tests.test_artifacts.Widget")


def test_custom_class_travels_by_pickle_with_a_warning(store):
    art = store.put(Widget(3), WIDGET)
    assert art.codec == "pickle" and art.uri.endswith(".pkl")
    assert "tests.test_artifacts.Widget" in art.warning or "test_artifacts.Widget" in art.warning
    assert store.get(art.uri, WIDGET) == Widget(3)


def test_signed_payload_is_loaded(store, tmp_path):
    """The control for the tamper tests: a correctly signed payload does run on load."""
    marker = tmp_path / "marker"
    art = store.put(Evil(marker), T("Evil"))
    assert store.get(art.uri, T("Evil")) == "ran" and marker.exists()


def _write_at_content_key(store: ArtifactStore, data: bytes) -> str:
    """What an attacker with write access to the store can do: a file at its own valid key."""
    return store.uri_of(store.write_blob(data, "pkl"))


def test_bad_signature_is_refused_before_unpickling(store, tmp_path):
    marker = tmp_path / "marker"
    legit = store.put(Widget(1), WIDGET)
    stored = store.fs.cat_file(store.path_of(legit.uri.removeprefix(store.root_url + "/")))
    magic_and_sig = stored[: len(stored) - len(pickle.dumps(Widget(1)))]  # cloudpickle == pickle here
    payload = pickle.dumps(Evil(marker))
    forged = _write_at_content_key(store, magic_and_sig + payload)  # a signature of other bytes
    with pytest.raises(ArtifactError, match="HMAC signature does not match"):
        store.get(forged, T("Evil"))
    unsigned = _write_at_content_key(store, payload)
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        store.get(unsigned, T("Evil"))
    assert not marker.exists()


def test_flipped_byte_is_refused(local, tmp_path):
    marker = tmp_path / "marker"
    art = local.put(Evil(marker), T("Evil"))
    path = local.path_of(art.uri.removeprefix(local.root_url + "/"))
    data = bytearray(Path(path).read_bytes())
    data[-3] ^= 0x01
    Path(path).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="content hash"):
        local.get(art.uri, T("Evil"))
    moved = _write_at_content_key(local, bytes(data))
    with pytest.raises(ArtifactError, match="HMAC"):
        local.get(moved, T("Evil"))
    assert not marker.exists()


def test_a_store_not_opened_by_a_kernel_never_loads_a_pickle(tmp_path, monkeypatch):
    """The driver's, the widget's: every task kernel holds the key, so a valid signature proves nothing."""
    marker = tmp_path / "marker"
    kernel = ArtifactStore(str(tmp_path / "a"), KEY, allow_pickle=True)
    art = kernel.put(Evil(marker), T("Evil"))
    listed = kernel.put([Evil(marker)], T("list", T("Evil")))
    monkeypatch.setenv("FLYTE_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLYTE_LAB_ARTIFACTS", str(tmp_path / "a"))
    monkeypatch.setenv("FLYTE_LAB_ARTIFACT_KEY", KEY.hex())
    for driver in (ArtifactStore(str(tmp_path / "a"), KEY), ArtifactStore.from_env(),
                   pickle.loads(pickle.dumps(ArtifactStore(str(tmp_path / "a"), KEY)))):  # also after crossing Dask
        for uri, ref in ((art.uri, T("Evil")), (listed.uri, T("list", T("Evil")))):
            with pytest.raises(ArtifactError, match=r"refusing to unpickle .* in this process"):
                driver.get(uri, ref)
    assert not marker.exists()
    assert isinstance(kernel.get(art.uri, T("Evil")), str) and marker.exists()  # the same file, in a kernel


def test_other_key_cannot_read_pickles(tmp_path):
    marker = tmp_path / "marker"
    art = ArtifactStore(str(tmp_path / "a"), KEY).put(Evil(marker), T("Evil"))
    with pytest.raises(ArtifactError, match="FLYTE_LAB_ARTIFACT_KEY"):
        ArtifactStore(str(tmp_path / "a"), b"x" * 32, allow_pickle=True).get(art.uri, T("Evil"))
    assert not marker.exists()


# -- URIs outside the root ---------------------------------------------------------------------


def _outside_file(tmp_path: Path, data: bytes = b"1") -> tuple[Path, str]:
    digest = hashlib.sha256(data).hexdigest()
    target = tmp_path / "outside" / digest[:2] / f"{digest}.json"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    return target, f"{digest[:2]}/{digest}.json"


def test_uris_outside_the_root_are_refused(local, tmp_path):
    target, key = _outside_file(tmp_path)
    root = local.root_url
    bad = [
        f"{root}/../outside/{key}",
        f"{root}/{key.split('/')[0]}/../../outside/{key}",
        f"file://{target}",
        str(target),
        "file:///etc/passwd",
        f"memory://{local.path_of(key)}",
        f"file://otherhost{local.path_of(key)}",
        f"simplecache::{root}/{key}",
        f"{root}/notakey.json",
        f"{root}/{key}/../{key}",
        f"{root}//{key}",
    ]
    for uri in bad:
        with pytest.raises(ArtifactError, match="refusing artifact URI"):
            local.get(uri, INT)
        with pytest.raises(ArtifactError):
            local.exists(uri)


def test_memory_store_refuses_other_roots(mem_store, tmp_path):
    art = mem_store.put(1, INT)
    key = art.uri.removeprefix(mem_store.root_url + "/")
    for uri in (f"memory:///elsewhere/{key}", f"file://{mem_store.path_of(key)}",
                f"{mem_store.root_url}/../{key}"):
        with pytest.raises(ArtifactError, match="refusing artifact URI"):
            mem_store.get(uri, INT)


def test_symlinks_leading_outside_are_refused(local, tmp_path):
    target, key = _outside_file(tmp_path)
    root = Path(local.path_of(""))
    # a whole shard folder linked outside
    (root / key.split("/")[0]).symlink_to(target.parent)
    with pytest.raises(ArtifactError, match="refusing artifact URI"):
        local.get(local.uri_of(key), INT)
    # a single file linked outside
    target2, key2 = _outside_file(tmp_path / "two", b"2")
    (root / key2.split("/")[0]).mkdir(exist_ok=True)
    (root / key2).symlink_to(target2)
    with pytest.raises(ArtifactError, match="refusing artifact URI"):
        local.get(local.uri_of(key2), INT)


def test_symlinked_root_itself_is_fine(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    st_ = ArtifactStore(str(tmp_path / "link"), KEY)
    assert st_.get(st_.put([1], T("list", INT)).uri, T("list", INT)) == [1]


# -- content addressing and concurrency ---------------------------------------------------------


def test_identical_values_share_one_uri(store):
    a = store.put({"b": 2, "a": 1}, T("dict", STR, INT))
    b = store.put({"a": 1, "b": 2}, T("dict", STR, INT))
    assert a.uri == b.uri and a.content_hash == b.content_hash
    assert store.put({1, 2, 3}, T("set", INT)).uri == store.put({3, 2, 1}, T("set", INT)).uri
    df = pd.DataFrame({"x": [1, 2]})
    assert store.put(df, T("pandas.DataFrame")).uri == store.put(df.copy(), T("pandas.DataFrame")).uri
    assert store.put(1, INT).uri != store.put(2, INT).uri
    assert store.exists(a.uri)
    assert not store.exists(a.uri.replace(a.content_hash, "0" * 64))


def test_concurrent_puts_of_one_value(local, tmp_path):
    barrier = threading.Barrier(8)
    src = tmp_path / "folder"
    src.mkdir()
    (src / "f.txt").write_text("same")

    def put(i: int) -> tuple[str, str]:
        barrier.wait()
        return (local.put(list(range(1000)), T("list", INT)).uri, local.put(src, T("pathlib.Path")).uri)

    with ThreadPoolExecutor(8) as pool:
        uris = set(pool.map(put, range(8)))
    assert len(uris) == 1
    (json_uri, path_uri), = uris
    assert local.get(json_uri, T("list", INT)) == list(range(1000))
    assert (local.get(path_uri, T("pathlib.Path")) / "f.txt").read_text() == "same"
    root = Path(local.path_of(""))
    assert list((root / ".tmp").iterdir()) == []
    assert [p for p in root.rglob("*") if p.name.startswith(".tmp-")] == []


def test_racing_processes_create_one_key(tmp_path):
    path = str(tmp_path / "home" / "artifact.key")
    with ProcessPoolExecutor(6, mp_context=get_context("spawn")) as pool:
        keys = list(pool.map(load_or_create_key, [path] * 12))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["artifact.key"]


def test_from_env(tmp_path, monkeypatch):
    monkeypatch.delenv("FLYTE_LAB_ARTIFACTS", raising=False)
    monkeypatch.delenv("FLYTE_LAB_ARTIFACT_KEY", raising=False)
    monkeypatch.setenv("FLYTE_LAB_HOME", str(tmp_path / "home"))
    one = ArtifactStore.from_env()
    assert one.root_url == f"file://{tmp_path}/home/artifacts"
    art = one.put(Widget(5), WIDGET)
    assert ArtifactStore.from_env(allow_pickle=True).get(art.uri, WIDGET) == Widget(5)  # same key file
    monkeypatch.setenv("FLYTE_LAB_ARTIFACT_KEY", "ab" * 32)
    with pytest.raises(ArtifactError, match="HMAC"):
        ArtifactStore.from_env(allow_pickle=True).get(art.uri, WIDGET)
    monkeypatch.setenv("FLYTE_LAB_ARTIFACTS", f"memory://flyte-lab-env-{uuid.uuid4().hex}")
    assert ArtifactStore.from_env(str(tmp_path / "other")).root_url.startswith("memory://")
    monkeypatch.setenv("FLYTE_LAB_ARTIFACT_KEY", "not hex")
    with pytest.raises(ArtifactError, match="not hex"):
        ArtifactStore.from_env()


def test_store_survives_pickling(store):
    """It crosses Dask to the workers."""
    art = store.put(Widget(9), WIDGET)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(art.uri, WIDGET) == Widget(9)


def test_nested_artifact_keys_are_checked_too(local, tmp_path):
    """A JSON artifact can only point at keys of its own store."""
    target, key = _outside_file(tmp_path)
    ref = T("list", T("pandas.DataFrame"))
    for nested in (f"../outside/{key}", str(target), "ab/short.parquet"):
        data = json.dumps([{"$artifact": nested}]).encode()
        uri = local.uri_of(local.write_blob(data, "json"))
        with pytest.raises(ArtifactError, match="refusing artifact URI"):
            local.get(uri, ref)


def test_union_with_a_path_arm_stores_the_file(store, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("A")
    ref = T("typing.Union", T("pathlib.Path"), INT)
    art = store.put(src, ref)
    assert art.codec == "path" and store.get(art.uri, ref).read_text() == "A"
    assert store.get(store.put(5, ref).uri, ref) == 5


def test_a_private_write_replaces_the_file_0600_whatever_the_umask_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(target, '{"new": 1}')
        write_private(tmp_path / "key", b"\x00\x01")
    finally:
        os.umask(old_umask)
    assert target.read_text() == '{"new": 1}' and (tmp_path / "key").read_bytes() == b"\x00\x01"
    assert {stat.S_IMODE(p.stat().st_mode) for p in (target, tmp_path / "key")} == {0o600}
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        write_private(tmp_path / "folder", b"x")  # the rename fails: the temp file goes with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "key", "state.json"]


def test_each_value_goes_through_the_registered_codec_its_key_names(store, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("x")

    class Opaque:  # no JSON form: travels by (signed) pickle
        pass

    cases = [(3, INT, "json"), (pd.DataFrame({"a": [1]}), T("pandas.DataFrame"), "parquet"),
             (np.arange(3), T("numpy.ndarray"), "npy"), (Opaque(), ANY, "pickle"),
             (src, T("pathlib.Path"), "path")]
    for value, type_ref, codec in cases:
        ref = store.put(value, type_ref)
        assert (ref.codec, CODECS.of_ext(ref.uri.rsplit(".", 1)[1]).name) == (codec, codec)
        assert type(store.get(ref.uri, type_ref)) is type(value)
    manifest = store.put_elements([1, 2], INT)
    assert CODECS.of_ext(manifest.uri.rsplit(".", 1)[1]).name == manifest.codec == "manifest"
    assert store.get(manifest.uri, T("list", INT)) == [1, 2]


def test_a_codec_whose_extension_names_another_is_refused() -> None:
    json_codec = CODECS.of_ext("json")
    with pytest.raises(ValueError, match="clashes"):
        CODECS.register(Codec("json5", "json", json_codec.read, json_codec.write))
    assert CODECS.of_ext("json") is json_codec
