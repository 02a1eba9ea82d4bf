"""Runs inside a task's kernel: load typed inputs, then check and save typed outputs.

The task notebook calls `enter`, `load_inputs` and `save_outputs` with the
`flyte_context` papermill injected; a batch of map-over elements' notebook calls
`load_element` and `save_element` once per element instead. Values travel only as artifacts; the
result (output artifact references) is written as JSON to `result_path` (a
path or fsspec URL), never parsed back out of printed text. The artifact HMAC
key comes from the driver through a private 0600 file the worker wrote
(`artifact_key_file`), so the key itself is never in the notebook.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.engine.worker.files import write_bytes
from flyte_lab.errors import TaskTypeError
from flyte_lab.graph.model import TypeRef, typeref_from_json
from flyte_lab.graph.value_checks import check_value, describe, type_error_message


def open_store(ctx: dict[str, Any]) -> ArtifactStore:
    """The run's artifact store, signed with the driver's key; never a key made up on this machine."""
    key_file = ctx.get("artifact_key_file")
    if key_file:
        with open(key_file, "rb") as src:
            key = src.read()
    else:
        key_hex = os.environ.get("FLYTE_LAB_ARTIFACT_KEY", "")
        if not key_hex:
            raise RuntimeError("flyte_lab: this task got no artifact key from the driver")
        key = bytes.fromhex(key_hex)
    # the worker's private cache; a task's kernel is where task-written pickles may be loaded
    return ArtifactStore(ctx["artifacts"], key, cache_dir=ctx.get("cache_dir"), allow_pickle=True)


def enter(ctx: dict[str, Any]) -> None:
    """Work where the source notebook lives, as it does in Jupyter."""
    if ctx.get("cwd") and os.path.isdir(ctx["cwd"]):
        os.chdir(ctx["cwd"])


def _annotation(text: str, namespace: dict[str, Any]) -> Any:
    # the user's own annotation, evaluated in the user's own task kernel after the setup cells ran
    try:
        return eval(text, namespace)  # noqa: S307
    except Exception:
        return None  # unknown at run time: the value is still decoded by its static type


def load_inputs(ctx: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    return _load(ctx, ctx["inputs"], namespace)


# what IPython itself binds as cells run (`_`, `__`, `_i`, `_ii`, `_i7`, `_7`): left alone by the reset
_IPYTHON_NAMES = re.compile(r"_(_{0,2}|i{1,3}|i?[0-9]+)")
# the names a batch's kernel had after its setup cells, before its first element's inputs (`load_element`)
_setup_names: dict[str, Any] | None = None


def load_element(ctx: dict[str, Any], namespace: dict[str, Any], index: int) -> dict[str, Any]:
    """Element `index` of a batch of map-over elements: the namespace put back to what the setup cells left
    (names bound by an earlier element removed, the setup's names rebound), then the element's inputs."""
    global _setup_names
    if _setup_names is None:
        _setup_names = dict(namespace)
    else:
        for name in [n for n in namespace if n not in _setup_names and not _IPYTHON_NAMES.fullmatch(n)]:
            del namespace[name]
        namespace.update(_setup_names)
    element = ctx["elements"][index]
    specs = [{**spec, "uri": element["uri"]} if spec["name"] == ctx["map_over"] else spec for spec in ctx["inputs"]]
    return _load(ctx, specs, namespace)


def save_element(ctx: dict[str, Any], namespace: dict[str, Any], index: int) -> None:
    """Element `index`'s outputs, checked and saved; its result file is its own."""
    _save(ctx, namespace, ctx["elements"][index]["result_path"])


def _load(ctx: dict[str, Any], inputs: list[dict[str, Any]], namespace: dict[str, Any]) -> dict[str, Any]:
    store = open_store(ctx)
    values: dict[str, Any] = {}
    for spec in inputs:
        ref = typeref_from_json(spec["type"])  # a mapped input arrives as its element's uri and type
        value = store.get(spec["uri"], ref, namespace)
        annotation = _annotation(ref.text or ref.canonical(), namespace)
        if annotation is not None:
            reason = check_value(value, annotation, spec["name"])
            if reason:
                raise TaskTypeError(type_error_message(ctx["task"], "input", spec["name"], ref.display(), reason))
        values[spec["name"]] = value
    return values


def save_outputs(ctx: dict[str, Any], namespace: dict[str, Any]) -> None:
    _save(ctx, namespace, ctx["result_path"])


def _save(ctx: dict[str, Any], namespace: dict[str, Any], result_path: str) -> None:
    store = open_store(ctx)
    result: dict[str, Any] = {}
    for spec in ctx["outputs"]:
        name = spec["name"]
        ref = typeref_from_json(spec["type"])
        if name not in namespace:
            raise TaskTypeError(f"task `{ctx['task']}`: output `{name}: {ref.display()}` was not assigned by the body")
        value = namespace[name]
        annotation = _annotation(ref.text or ref.canonical(), namespace)
        if annotation is not None:
            reason = check_value(value, annotation, name)
            if reason:
                raise TaskTypeError(type_error_message(ctx["task"], "output", name, ref.display(), reason))
        # a list that feeds a map-over is stored element by element: each map task reads only its own
        if spec.get("split"):
            art = store.put_elements(value, ref.args[0] if ref.args else TypeRef("typing.Any"), namespace)
        else:
            art = store.put(value, ref, namespace)
        entry = {"type": ref.display(), "uri": art.uri, "codec": art.codec, "content_hash": art.content_hash,
                 "preview": art.preview}
        if art.codec == "json" and _plain(value):
            entry["value"] = value
        if art.warning:
            print(f"flyte_lab: {art.warning}")
        result[name] = entry
    write_bytes(result_path, json.dumps(result).encode())


def _plain(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


__all__ = ["describe", "enter", "load_element", "load_inputs", "open_store", "save_element", "save_outputs"]
