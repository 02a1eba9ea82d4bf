"""Lists stored element by element (manifests), private copies of path inputs, private file modes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from flyte_lab.engine import task_runtime
from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.errors import ArtifactError, TaskTypeError
from tests.test_artifacts import COLOR, KEY, SHAPE, T, setup_namespace

INT, ANY = T("int"), T("typing.Any")
PATH = T("pathlib.Path")


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"), KEY, allow_pickle=True)  # as a task kernel opens it
        return
    root = f"memory://flyte-lab-lists-{uuid.uuid4().hex}"
    yield ArtifactStore(root, KEY, cache_dir=str(tmp_path / "cache"), allow_pickle=True)
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory:/")):
        fs.rm(root.removeprefix("memory:/"), recursive=True)


def _key(store: ArtifactStore, uri: str) -> str:
    return uri.removeprefix(store.root_url + "/")


# -- manifests ---------------------------------------------------------------------------------


def test_put_elements_stores_each_element_and_reads_back_as_a_list(store):
    ref = store.put_elements([3, 1, 2], INT)
    assert ref.codec == "manifest" and ref.preview == "[3, 1, 2]"
    elements = store.manifest_elements(ref.uri)
    assert [store.get(uri, INT) for uri in elements] == [3, 1, 2]
    assert store.get(ref.uri, T("list", INT)) == [3, 1, 2]
    data = store.fs.cat_file(store.path_of(_key(store, ref.uri)))
    assert hashlib.sha256(data).hexdigest() == ref.content_hash
    # the manifest's hash covers the elements: another element, another manifest
    assert store.put_elements([3, 1, 4], INT).content_hash != ref.content_hash
    assert store.put_elements([], INT).preview == "[]"
    assert store.get(store.put_elements([], INT).uri, T("list", INT)) == []


def test_dataclass_enum_and_dataframe_elements(store):
    ns = setup_namespace()
    shapes = [ns["Shape"]("a", [ns["Point"](1, 2)], ns["Color"].RED), ns["Shape"]("b", [], ns["Color"].BLUE)]
    ref = store.put_elements(shapes, SHAPE, ns)
    fresh = setup_namespace()
    back = store.get(ref.uri, T("list", SHAPE), fresh)
    assert [s.name for s in back] == ["a", "b"] and type(back[0]) is fresh["Shape"]
    assert back[1].color is fresh["Color"].BLUE
    one = store.manifest_elements(ref.uri)[1]
    assert store.get(one, SHAPE, fresh).name == "b"

    colors = store.put_elements([ns["Color"].BLUE, ns["Color"].RED], COLOR)
    assert store.get(colors.uri, T("list", COLOR), fresh) == [fresh["Color"].BLUE, fresh["Color"].RED]

    frames = [pd.DataFrame({"x": [i, i + 1]}) for i in range(3)]
    ref = store.put_elements(frames, T("pandas.DataFrame"))
    uris = store.manifest_elements(ref.uri)
    assert all(uri.endswith(".parquet") for uri in uris)
    assert store.get(uris[2], T("pandas.DataFrame"))["x"].tolist() == [2, 3]
    assert [f["x"].tolist() for f in store.get(ref.uri, T("list", T("pandas.DataFrame")))] == [
        [0, 1], [1, 2], [2, 3]]


def test_put_manifest_does_not_read_the_elements(store):
    refs = [store.put(v, INT) for v in (10, 20)]
    whole = store.put_elements([10, 20], INT)
    for ref in refs:  # prove no element is read: remove them all first
        store.fs.rm(store.path_of(_key(store, ref.uri)))
    gathered = store.put_manifest([r.uri for r in refs], INT)
    assert gathered.preview == "[2 items]"
    assert (gathered.uri, gathered.content_hash) == (whole.uri, whole.content_hash)  # same content, same key
    assert store.manifest_elements(gathered.uri) == [r.uri for r in refs]
    with pytest.raises(ArtifactError, match="does not exist"):
        store.get(gathered.uri, T("list", INT))
    assert store.put_manifest([refs[0].uri], INT).preview == "[1 item]"


def test_manifest_refuses_foreign_uris_wrong_types_and_tampering(store, tmp_path):
    with pytest.raises(ArtifactError, match="refusing artifact URI"):
        store.put_manifest([f"file://{tmp_path}/x.json"], INT)
    ref = store.put_elements([1, 2], INT)
    with pytest.raises(ArtifactError, match="cannot be read as int"):
        store.get(ref.uri, INT)
    assert store.get(ref.uri, T("typing.Optional", T("list", INT))) == [1, 2]
    assert store.get(ref.uri, T("tuple", INT, T("..."))) == (1, 2)
    with pytest.raises(ArtifactError, match="not a list manifest"):
        store.manifest_elements(store.put(1, INT).uri)
    with pytest.raises(TaskTypeError, match="does not match the declared type list"):
        store.put_elements((1, 2), INT)  # type: ignore[arg-type]
    # a manifest whose element hash disagrees with the element key is refused
    other = store.put(5, INT)
    key = _key(store, other.uri)
    bad = json.dumps({"elements": [[key, "0" * 64]]}).encode()
    uri = store.uri_of(store.write_blob(bad, "list"))
    with pytest.raises(ArtifactError, match="malformed"):
        store.manifest_elements(uri)
    escaping = json.dumps({"elements": [["../x/" + key, key[3:67]]]}).encode()
    with pytest.raises(ArtifactError, match="refusing artifact URI"):
        store.get(store.uri_of(store.write_blob(escaping, "list")), T("list", INT))


def test_element_uris_of_any_stored_list_decode_nothing_on_the_driver(store, tmp_path):
    """Lists stored before manifests (a workflow input, a JSON list, a list of DataFrames) still split into
    element URIs; a JSON list of setup-cell dataclasses splits without the class being importable; a pickled
    list is left to a kernel (None), never loaded."""
    ns = setup_namespace()
    shapes = [ns["Shape"]("a", [ns["Point"](1, 2)], ns["Color"].RED), ns["Shape"]("b", [], ns["Color"].BLUE)]
    whole = store.put(shapes, T("list", SHAPE), ns)
    assert whole.codec == "json"
    uris = store.element_uris(whole.uri, SHAPE)  # no namespace: the driver has no Shape class
    assert [store.get(u, SHAPE, ns).name for u in uris] == ["a", "b"]
    assert uris[1] == store.put(shapes[1], SHAPE, ns).uri  # an element's JSON is its standalone JSON
    frames = store.put([pd.DataFrame({"x": [1]}), pd.DataFrame({"x": [2]})], T("list", T("pandas.DataFrame")))
    parts = store.element_uris(frames.uri, T("pandas.DataFrame"))
    assert all(u.endswith(".parquet") for u in parts)
    assert store.get(parts[1], T("pandas.DataFrame"))["x"].tolist() == [2]
    listed = store.put_elements([7, 8], INT)
    assert store.element_uris(listed.uri, INT) == store.manifest_elements(listed.uri)
    from tests.test_artifacts import Evil

    marker = tmp_path / "marker"
    pickled = store.put([Evil(marker), Evil(marker)], T("list", T("tests.test_artifacts.Evil")))
    assert pickled.codec == "pickle"
    assert store.element_uris(pickled.uri, T("tests.test_artifacts.Evil")) is None
    assert not marker.exists()  # the store may unpickle (a kernel's), yet splitting never did
    optional = store.put([None, 3], T("list", T("typing.Optional", INT)))
    assert [store.get(u, T("typing.Optional", INT)) for u in store.element_uris(optional.uri, INT)] == [None, 3]


def _runtime_ctx(tmp_path: Path, store: ArtifactStore, **extra) -> dict:
    return {"home": str(tmp_path / "home"), "artifacts": store.root_url, "task": "t",
            "result_path": str(tmp_path / "result.json"), "inputs": [], "outputs": [], **extra}


def test_task_runtime_splits_outputs_and_reads_one_element(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYTE_LAB_ARTIFACT_KEY", KEY.hex())
    store = ArtifactStore(str(tmp_path / "artifacts"), KEY)
    list_type = {"name": "list", "args": [{"name": "int"}], "text": "list[int]"}
    ctx = _runtime_ctx(tmp_path, store, outputs=[{"name": "xs", "type": list_type, "split": True},
                                                 {"name": "ys", "type": list_type}])
    task_runtime.save_outputs(ctx, {"xs": [4, 5, 6], "ys": [7]})
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["xs"]["codec"] == "manifest" and result["ys"]["codec"] == "json"
    second = store.manifest_elements(result["xs"]["uri"])[1]
    ctx = _runtime_ctx(tmp_path, store, inputs=[{"name": "x", "type": {"name": "int"}, "uri": second}])
    assert task_runtime.load_inputs(ctx, {}) == {"x": 5}
    ctx["inputs"][0]["type"] = list_type  # a downstream task reads the whole gathered list
    ctx["inputs"][0]["uri"] = result["xs"]["uri"]
    assert task_runtime.load_inputs(ctx, {}) == {"x": [4, 5, 6]}


# -- path inputs are private copies ------------------------------------------------------------


def test_a_task_editing_its_path_input_cannot_change_the_store(store, tmp_path):
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("original")
    art = store.put(src, PATH)
    first = store.get(art.uri, PATH)
    (first / "sub" / "a.txt").write_text("changed!")  # same size, in place
    (first / "extra.txt").write_text("x")
    second = store.get(art.uri, PATH)
    assert second != first
    assert (second / "sub" / "a.txt").read_text() == "original" and not (second / "extra.txt").exists()
    assert stat.S_IMODE(os.stat(second.parent).st_mode) == 0o700  # a private temp folder
    if store.local:  # the store's own file is untouched
        stored = Path(store.path_of(_key(store, art.uri))) / "data" / "data" / "sub" / "a.txt"
        assert stored.read_text() == "original"


def test_a_damaged_cache_entry_is_fetched_again(tmp_path):
    root = f"memory://flyte-lab-cache-{uuid.uuid4().hex}"
    store = ArtifactStore(root, KEY, cache_dir=str(tmp_path / "cache"))
    src = tmp_path / "f.txt"
    src.write_text("abc")
    art = store.put(src, PATH)
    assert store.get(art.uri, PATH).read_text() == "abc"
    cached = tmp_path / "cache" / _key(store, art.uri) / "data" / "f.txt"
    cached.write_text("xyz")  # same size: only the hash can tell
    assert store.get(art.uri, PATH).read_text() == "abc"
    assert cached.read_text() == "abc"
    fsspec.filesystem("memory").rm(root.removeprefix("memory:/"), recursive=True)


# -- private modes -----------------------------------------------------------------------------


def _modes(top: Path) -> set[tuple[str, int]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            out.add(("dir", stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)))
        for name in filenames:
            out.add(("file", stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)))
    return out


def test_artifacts_key_and_cache_are_private(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        monkeypatch.delenv("FLYTE_LAB_ARTIFACTS", raising=False)
        monkeypatch.delenv("FLYTE_LAB_ARTIFACT_KEY", raising=False)
        home = tmp_path / "home"
        store = ArtifactStore.from_env(str(home))
        src = tmp_path / "model"
        (src / "deep").mkdir(parents=True)
        (src / "deep" / "w.bin").write_bytes(b"123")
        store.put(src, PATH)
        store.put([1, 2], T("list", INT))
        store.put_elements([1.5], T("float"))
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        assert _modes(home) == {("dir", 0o700), ("file", 0o600)}
        assert ("file", 0o600) in _modes(home / "artifacts")

        monkeypatch.setenv("FLYTE_LAB_ARTIFACTS", f"memory://flyte-lab-modes-{uuid.uuid4().hex}")
        remote = ArtifactStore.from_env(str(home))
        remote.get(remote.put(src, PATH).uri, PATH)
        assert _modes(home / "artifact-cache") == {("dir", 0o700), ("file", 0o600)}
        assert stat.S_IMODE(os.stat(home / "artifact-cache").st_mode) == 0o700
    finally:
        os.umask(old)


def test_element_type_any_keeps_values(store):
    ref = store.put_elements([1, "a", None], ANY)
    assert store.get(ref.uri, ANY) == [1, "a", None]
    assert store.get(ref.uri, T("list")) == [1, "a", None]
