"""Values no other codec can hold, as cloudpickle behind the store's HMAC signature (`.pkl`).

A stored pickle is `MAGIC + signature + payload`. Only a store opened with `allow_pickle=True` (a task's
kernel, the user's own) loads one, and only after the signature matched: loading a pickle runs code.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.codecs import typed_json
from flyte_lab.errors import ArtifactError

if TYPE_CHECKING:
    from flyte_lab.engine.artifacts import ArtifactRef, ArtifactStore

_MAGIC = b"FLYTE_LAB_PICKLE_V1\n"
_SIG_SIZE = hashlib.sha256().digest_size


def write(store: ArtifactStore, value: Any, spec: Any, namespace: dict[str, Any] | None) -> ArtifactRef:
    return write_value(store, value, typed_json.qualname(type(value)))


def write_value(store: ArtifactStore, value: Any, cls_name: str, reason: str = "") -> ArtifactRef:
    """Pickle `value`; the warning names `cls_name` (the part that needed pickling) and why, if another codec
    gave up on it."""
    import cloudpickle

    payload = cloudpickle.dumps(value)
    data = _MAGIC + store.sign(payload) + payload
    warning = (f"{cls_name} travels by cloudpickle: only code with the same class definitions and "
               "library versions can read it back")
    if reason:
        warning += f" ({reason[:200]})"
    key = store.write_blob(data, "pkl")
    return store.ref(key, "pickle", data, typed_json.preview_of(value), warning)


def read(store: ArtifactStore, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
    data = store.read_verified(key)
    if not store.allow_pickle:
        uri = store.uri_of(key)
        raise ArtifactError(f"refusing to unpickle {uri} in this process: only a task's kernel (or your own, "
                            "with %flyte_load) loads pickles, whose loading runs code", uri=uri)
    head = len(_MAGIC)
    signature, payload = data[head:head + _SIG_SIZE], data[head + _SIG_SIZE:]
    # the signature is checked before a single byte of the payload is unpickled
    if not data.startswith(_MAGIC) or not hmac.compare_digest(signature, store.sign(payload)):
        raise ArtifactError(
            f"refusing to unpickle {store.uri_of(key)}: its HMAC signature does not match this store's "
            "key (the file was tampered with, or written with another FLYTE_LAB_ARTIFACT_KEY)",
            uri=store.uri_of(key))
    import cloudpickle

    return cloudpickle.loads(payload)
