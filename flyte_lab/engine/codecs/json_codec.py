"""JSON artifacts (`.json`): a value encoded by its declared type (`typed_json`) as canonical JSON.

Parts with a codec of their own (DataFrames, arrays, paths) are stored as artifacts of their own and named
by key inside the JSON; a value with a part JSON cannot hold is pickled whole (`signed_pickle`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.codecs import signed_pickle, typed_json

if TYPE_CHECKING:
    from flyte_lab.engine.artifacts import ArtifactRef, ArtifactStore


def write(store: ArtifactStore, value: Any, spec: Any, namespace: dict[str, Any] | None) -> ArtifactRef:
    ctx = typed_json.Context(namespace, put_nested=lambda v, s: store.put_nested(v, s, namespace))
    try:
        data = typed_json.canonical_json(typed_json.encode(value, spec, ctx))
    except typed_json.NotJson as exc:
        return signed_pickle.write_value(store, value, exc.qualname)
    return store.ref(store.write_blob(data, "json"), "json", data, typed_json.preview_of(value))


def read(store: ArtifactStore, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
    ctx = typed_json.Context(namespace, get_nested=lambda k, s: store.get_nested(k, s, namespace))
    return typed_json.decode(json.loads(store.read_verified(key)), spec, ctx)
