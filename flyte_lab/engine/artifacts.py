"""The typed artifact store: task values in, content-addressed files out.

Every value is written under `ROOT/ab/abcdef….EXT`, where the name is the
sha256 of the stored bytes, so equal values share one file and a file never
changes once written. The codec follows the declared type, each one a module
of `engine/codecs/` registered in `CODECS`: typed JSON by default, Parquet for
DataFrames, `.npy` for arrays, a copied file or folder for `pathlib.Path`, and
cloudpickle, signed with this store's HMAC-SHA256 key, for everything else.
This module keeps the store's own concerns: keys and URIs, content-addressed
blobs, the signing key, dispatch through the registry, and list manifests. A list can also be stored element by
element behind a manifest (`put_elements`, `put_manifest`), so a map-over task
reads only its element and the driver splits and gathers without decoding. Reading
checks that the URI names a key of this store before touching it, checks every
byte against its sha256, and checks the signature before unpickling anything.
Everything written locally is private (folders 0700, files 0600).

Only task kernels (and the user's own kernel) unpickle: every task kernel holds the
signing key, so a signature proves a pickle came from some task, not that loading it
is harmless. A store unpickles only when opened with `allow_pickle=True`, which only
kernels do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from flyte_lab.engine.artifact_key import load_or_create_key
from flyte_lab.engine.codecs import json_codec, parquet_npy, path_artifacts, signed_pickle, typed_json
from flyte_lab.engine.codecs.registry import Codec, CodecRegistry
from flyte_lab.errors import ArtifactError, TaskTypeError
from flyte_lab.graph.model import TypeRef
from flyte_lab.private_fs import make_private_dirs, open_private, write_private

# the codec a value of a declared kind is written with (others: JSON, by `typed_json.encode`)
_CODEC_OF_KIND = {"path": "path", "dataframe": "parquet", "ndarray": "npy", "other": "pickle"}
_PREVIEW_LIMIT = 200


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stored value lives and how to read it back."""

    uri: str
    codec: str  # "json" | "parquet" | "npy" | "path" | "pickle" | "manifest"
    content_hash: str  # sha256 of the stored bytes (for a path or a list manifest: of its manifest)
    preview: str  # <= 200 characters, for tables and dashboards
    warning: str | None = None  # set for pickle: the class that travels by cloudpickle

    def as_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "codec": self.codec, "content_hash": self.content_hash,
                "preview": self.preview}


class ArtifactStore:
    """Content-addressed artifacts under one fsspec root (`file://`, `memory://`, `s3://`…).

    The codecs of `engine/codecs/` use its public surface: `write_blob`, `read_verified`, `read_raw`, `ref`,
    `sign`, `put_nested` / `get_nested`, `path_of` / `uri_of` / `digest_of`, and where it lives (`fs`,
    `local`, `root_path`, `real_root`, `cache_dir`).
    """

    def __init__(self, root_url: str, hmac_key: bytes, *, cache_dir: str | None = None,
                 allow_pickle: bool = False) -> None:
        if not hmac_key:
            raise ArtifactError("the artifact HMAC key is empty; set FLYTE_LAB_ARTIFACT_KEY to hex bytes")
        if "::" in root_url:
            raise ArtifactError(f"chained fsspec URLs are not supported as artifact root: {root_url}")
        self._key = bytes(hmac_key)
        # True only in a task's kernel and the user's own (`%flyte_load`): see the module docstring
        self.allow_pickle = allow_pickle
        fs, root = url_to_fs(root_url)
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            root = make_private_dirs(os.path.expanduser(root))
            self.real_root = os.path.realpath(root)  # symlinks resolved: what reads must stay inside
        self.root_path = root.rstrip("/")
        self.root_url = fs.unstrip_protocol(self.root_path)
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self._protocols = set(protocols)
        digest = hashlib.sha256(self.root_url.encode()).hexdigest()[:16]
        # a remote store's path artifacts are downloaded here once per worker
        self.cache_dir = cache_dir or os.path.join(
            tempfile.gettempdir(), f"flyte_lab-{os.getuid()}-cache-{digest}")

    @property
    def hmac_key_hex(self) -> str:
        """The signing key, for the driver to hand to workers (never generated per machine)."""
        return self._key.hex()

    def __reduce__(self) -> tuple[Any, ...]:
        # the store crosses Dask to workers: rebuild it from its settings, not its fs object
        return (_rebuild_store, (self.root_url, self._key, self.cache_dir, self.allow_pickle))

    @classmethod
    def from_env(cls, home: str | None = None, *, allow_pickle: bool = False) -> ArtifactStore:
        home = os.path.expanduser(home or os.environ.get("FLYTE_LAB_HOME") or "~/.flyte_lab")
        root = root_url_from_env(home)
        key_hex = os.environ.get("FLYTE_LAB_ARTIFACT_KEY")
        if key_hex:
            try:
                key = bytes.fromhex(key_hex.strip())
            except ValueError:
                raise ArtifactError("FLYTE_LAB_ARTIFACT_KEY is not hex; use e.g. the output of "
                                    "`python -c 'import secrets; print(secrets.token_hex(32))'`") from None
        else:
            key = load_or_create_key(os.path.join(home, "artifact.key"))
        return cls(root, key, cache_dir=os.path.join(home, "artifact-cache"), allow_pickle=allow_pickle)

    # -- writing ------------------------------------------------------------------------------

    def put(self, value: Any, type_ref: TypeRef, namespace: dict[str, Any] | None = None) -> ArtifactRef:
        """Store `value` as its declared type; `namespace` resolves dataclass field annotations
        when the class's module is not the kernel namespace."""
        return self._put(value, type_ref, namespace)

    def _put(self, value: Any, spec: Any, namespace: dict[str, Any] | None = None) -> ArtifactRef:
        shape = typed_json.shape_of(spec)
        if shape.kind == "union" and value is not None:
            arms = [a for a in shape.args if typed_json.shape_of(a).kind != "none"]
            if len(arms) == 1:  # Optional[T] holding a T is stored as a T
                return self._put(value, arms[0], namespace)
            for arm in arms:  # a file-like arm the value matches gets its own codec
                kind = typed_json.shape_of(arm).kind
                if kind in typed_json.NESTED_KINDS and _matches(value, kind):
                    return self._put(value, arm, namespace)
        kind = shape.kind
        if value is not None and kind == "any":  # no declared type: the value's natural codec
            kind = next((k for k in ("dataframe", "ndarray") if _matches(value, k)), "any")
        if value is not None and kind in typed_json.NESTED_KINDS:
            typed_json.check_nested(value, spec, kind)
        write = CODECS.writer(_CODEC_OF_KIND.get(kind, "json") if value is not None else "json")
        return write(self, value, spec, namespace)

    def put_nested(self, value: Any, spec: Any, namespace: dict[str, Any] | None) -> str:
        """Store a part of a value (a DataFrame inside a dataclass…) as its own artifact; its key."""
        return self._key_of(self._put(value, spec, namespace).uri)

    def sign(self, payload: bytes) -> bytes:
        """The HMAC-SHA256 signature of a pickle payload under this store's key."""
        return hmac.new(self._key, b"flyte_lab/pickle/v1\0" + payload, hashlib.sha256).digest()

    def ref(self, key: str, codec: str, data: bytes, preview: str, warning: str | None = None) -> ArtifactRef:
        """The reference to a blob just written under `key` (`data`: the bytes whose hash it carries)."""
        digest = hashlib.sha256(data).hexdigest()
        return ArtifactRef(self.uri_of(key), codec, digest, _clip(preview), warning)

    def write_blob(self, data: bytes, ext: str) -> str:
        """Store `data` under its content key (idempotent, atomic) and return the key."""
        digest = hashlib.sha256(data).hexdigest()
        key = f"{digest[:2]}/{digest}.{ext}"
        path = self.path_of(key)
        if self.fs.exists(path):
            return key  # content-addressed: the same key always holds the same bytes
        if self.local:
            make_private_dirs(os.path.dirname(path))
            write_private(path, data)  # readers never see a partial file
        else:
            self.fs.pipe_file(path, data)
        return key

    # -- lists stored element by element (a "manifest") -----------------------------------------
    # `ab/<hash>.list` holds {"elements": [[key, sha256], ...]}: each element is its own artifact
    # with its own codec, and the manifest's hash covers every element's key and hash. A map-over
    # task reads only its element; the driver gathers map outputs without reading any of them.

    def put_elements(self, values: list[Any], elem_type: TypeRef,
                     namespace: dict[str, Any] | None = None) -> ArtifactRef:
        """Store each element of `values` as `elem_type`, then the manifest listing them."""
        if not isinstance(values, list):
            got = typed_json.qualname(type(values))
            raise TaskTypeError(f"value of type {got} does not match the declared type list[{elem_type.display()}]",
                                expected=f"list[{elem_type.display()}]", got=got)
        refs = [self._put(value, elem_type, namespace) for value in values]
        preview = "[" + ", ".join(ref.preview for ref in refs) + "]"
        warning = next((ref.warning for ref in refs if ref.warning), None)
        return self._put_manifest([self._key_of(ref.uri) for ref in refs], preview, warning)

    def put_manifest(self, element_uris: list[str], elem_type: TypeRef) -> ArtifactRef:
        """A list of existing element artifacts (e.g. map outputs), built without reading them."""
        del elem_type  # readers give the type; the manifest only lists contents
        keys = [self._key_of(uri) for uri in element_uris]
        count = len(keys)
        return self._put_manifest(keys, f"[{count} item{'' if count == 1 else 's'}]")

    def manifest_elements(self, uri: str) -> list[str]:
        """The element URIs of a manifest, reading only the manifest."""
        key = self._key_of(uri)
        if not key.endswith(".list"):
            raise ArtifactError(f"artifact {uri} is not a list manifest", uri=uri)
        return [self.uri_of(k) for k in self._manifest_keys(key, self.read_verified(key))]

    def element_uris(self, uri: str, elem_type: TypeRef) -> list[str] | None:
        """One URI per element of a stored list, for the driver to hand each map task its own element;
        None when only a kernel may split it.

        A manifest lists them already. A JSON list is split at the JSON level, decoding nothing: each
        element's JSON is exactly what storing that element alone writes, and a nested artifact
        (`{"$artifact": key}`) is its own element. Anything else (a pickled list, e.g. cached by a run
        where no map-over read it) is never loaded here: loading a pickle runs code of the task's choosing.
        """
        key = self._key_of(uri)
        if key.endswith(".list"):
            return self.manifest_elements(uri)
        if key.endswith(".json"):
            data = json.loads(self.read_verified(key))
            if isinstance(data, list):
                nested = typed_json.shape_of(elem_type).kind != "dict"
                return [self.uri_of(self._checked_key(item["$artifact"], uri))
                        if nested and isinstance(item, dict) and item.keys() == {"$artifact"}
                        else self.uri_of(self.write_blob(typed_json.canonical_json(item), "json")) for item in data]
        return None

    def _put_manifest(self, keys: list[str], preview: str, warning: str | None = None) -> ArtifactRef:
        elements = [[key, KEY_RE.match(key).group(1)] for key in keys]  # type: ignore[union-attr]
        data = typed_json.canonical_json({"elements": elements})
        return self.ref(self.write_blob(data, "list"), "manifest", data, preview, warning)

    def _manifest_keys(self, key: str, data: bytes) -> list[str]:
        try:
            elements = json.loads(data)["elements"]
            keys = [self._checked_key(k, self.uri_of(key)) for k, _sha in elements]
            consistent = all(KEY_RE.match(k).group(1) == sha for k, (_k, sha) in zip(keys, elements, strict=True))  # type: ignore[union-attr]
        except (ValueError, KeyError, TypeError):
            consistent = False
        if not consistent:
            raise ArtifactError(f"the list manifest {self.uri_of(key)} is malformed", uri=self.uri_of(key))
        return keys

    def _get_manifest(self, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
        data = self.read_verified(key)
        kind, elem_spec = _sequence_spec(spec)
        if kind is None:
            raise ArtifactError(f"stored list {self.uri_of(key)} cannot be read as {typed_json.display(spec)}; "
                                "the artifact was written for another type", expected=typed_json.display(spec))
        items = [self._get(k, elem_spec, namespace) for k in self._manifest_keys(key, data)]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)

    # -- reading ------------------------------------------------------------------------------

    def get(self, uri: str, type_ref: TypeRef, namespace: dict[str, Any] | None = None) -> Any:
        return self._get(self._key_of(uri), type_ref, namespace)

    def _get(self, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
        ext = KEY_RE.match(key).group(2)  # type: ignore[union-attr]  # checked by _key_of
        return CODECS.of_ext(ext).read(self, key, spec, namespace)

    def get_nested(self, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
        """A part of a value stored as its own artifact, by the key its container names (checked first)."""
        return self._get(self._checked_key(key), spec, namespace)

    def read_verified(self, key: str) -> bytes:
        """The bytes stored under `key`, refused unless their sha256 is the one the key names."""
        data = self.read_raw(key)
        if hashlib.sha256(data).hexdigest() != KEY_RE.match(key).group(1):  # type: ignore[union-attr]
            raise ArtifactError(f"artifact {self.uri_of(key)} does not match its content hash; "
                                "it was modified after it was written", uri=self.uri_of(key))
        return data

    def read_raw(self, key: str) -> bytes:
        try:
            if self.local:
                with open(self.path_of(key), "rb") as fh:
                    return fh.read()
            return self.fs.cat_file(self.path_of(key))
        except FileNotFoundError:
            raise ArtifactError(f"artifact {self.uri_of(key)} does not exist", uri=self.uri_of(key)) from None

    def exists(self, uri: str) -> bool:
        key = self._key_of(uri)
        if key.endswith(".path"):
            return self.fs.exists(self.path_of(key) + "/manifest.json")
        return self.fs.exists(self.path_of(key))

    # -- keys and URIs ------------------------------------------------------------------------

    def path_of(self, key: str) -> str:
        return f"{self.root_path}/{key}"

    def uri_of(self, key: str) -> str:
        return self.fs.unstrip_protocol(self.path_of(key))

    def _key_of(self, uri: str) -> str:
        """The store key a URI names, refusing anything that is not a key under this root."""
        if not isinstance(uri, str) or "::" in uri:
            raise _outside(uri, self.root_url)
        if get_protocol(uri) not in self._protocols:
            raise _outside(uri, self.root_url)
        if self.local:
            # parse file URLs ourselves: fsspec would turn `file://host/x` into a cwd-relative path
            path = uri.split("://", 1)[1] if "://" in uri else uri
            if not path.startswith("/"):
                raise _outside(uri, self.root_url)
        else:
            path = type(self.fs)._strip_protocol(uri)
        prefix = self.root_path + "/"
        if not path.startswith(prefix):
            raise _outside(uri, self.root_url)
        return self._checked_key(path[len(prefix):], uri)

    def _checked_key(self, key: str, uri: str | None = None) -> str:
        # the pattern admits no `..`, no extra slashes, only names this store computes
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise _outside(uri or key, self.root_url)
        if self.local:
            self.check_inside(self.path_of(key), uri or key)
        return key

    def digest_of(self, key: str) -> str:
        """The sha256 a checked key names."""
        return KEY_RE.match(key).group(1)  # type: ignore[union-attr]  # checked by _key_of

    def check_inside(self, path: str, uri: str) -> None:
        if not path_artifacts.is_inside(path, self.root_path, self.real_root):
            raise _outside(uri, self.root_url)



CODECS = CodecRegistry()
for _codec in (
    Codec("json", "json", json_codec.read, json_codec.write),
    Codec("parquet", "parquet", parquet_npy.read_parquet, parquet_npy.write_parquet),
    Codec("npy", "npy", parquet_npy.read_npy, parquet_npy.write_npy),
    Codec("pickle", "pkl", signed_pickle.read, signed_pickle.write),
    Codec("path", "path", path_artifacts.read, path_artifacts.write),
    Codec("manifest", "list", ArtifactStore._get_manifest, None),  # written from its elements: `put_elements`
):
    CODECS.register(_codec)
KEY_RE = CODECS.key_pattern()


def _sequence_spec(spec: Any) -> tuple[str | None, Any]:
    """(`list`/`tuple`/`set`/`frozenset` or None, element spec) of a declared type a list can be read as."""
    shape = typed_json.shape_of(spec)
    if shape.kind == "union":
        for arm in shape.args:
            kind, elem = _sequence_spec(arm)
            if kind is not None:
                return kind, elem
        return None, None
    if shape.kind == "any":
        return "list", typed_json.ANY
    if shape.kind in ("list", "set", "frozenset") or (shape.kind == "tuple" and len(shape.args) == 2
                                                     and typed_json.is_ellipsis(shape.args[1])):
        return shape.kind, shape.args[0] if shape.args else typed_json.ANY
    if shape.kind == "tuple" and not shape.args:
        return "tuple", typed_json.ANY
    return None, None


def _matches(value: Any, kind: str) -> bool:
    if kind == "path":
        return isinstance(value, os.PathLike)
    return typed_json.is_dataframe(value) if kind == "dataframe" else typed_json.is_ndarray(value)


def _clip(text: str) -> str:
    return text if len(text) <= _PREVIEW_LIMIT else text[: _PREVIEW_LIMIT - 1] + "…"


def _outside(uri: Any, root: str) -> ArtifactError:
    return ArtifactError(f"refusing artifact URI {uri!r}: it is not an artifact of the store at {root}",
                         uri=str(uri))


def root_url_from_env(home: str) -> str:
    """Where artifacts go: `FLYTE_LAB_ARTIFACTS`, else `HOME/artifacts` (nothing is created)."""
    return os.environ.get("FLYTE_LAB_ARTIFACTS") or os.path.join(home, "artifacts")


PROBE_NAME = ".flyte-lab-probe"  # never a content key (KEY_RE), so it cannot shadow an artifact


def root_problem(root_url: str) -> str | None:
    """Why a run could not write artifacts under this root (None if it can): one small probe write, so
    missing credentials, a missing bucket or a read-only folder are found before anything is recorded,
    not as a traceback from the first task."""
    try:
        fs, root = url_to_fs(root_url)
    except (ImportError, ValueError) as err:  # e.g. s3:// without s3fs installed
        return f"cannot open it ({_first_line(err)})"
    if isinstance(fs, LocalFileSystem):
        return _local_root_problem(root)
    try:
        fs.pipe_file(f"{root.rstrip('/')}/{PROBE_NAME}", b"flyte_lab checks it may write here\n")
    except Exception as err:  # whatever the backend raises: it is the reason, told in one line
        reason = _first_line(err)
        if type(err).__name__ == "NoCredentialsError" or "credentials" in reason.lower():
            reason += ("; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of "
                       "the driver and of every worker (AWS_ENDPOINT_URL for an S3-compatible server)")
        return f"cannot write there ({reason})"
    return None


def _local_root_problem(root: str) -> str | None:
    # a real write (file modes say nothing to root; a read-only mount refuses whatever they say), in the
    # root or, when it is still to be made, in the folder it will be made in: the probe leaves nothing
    folder = os.path.abspath(os.path.expanduser(root))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    try:
        probe = os.path.join(folder, f"{PROBE_NAME}-{uuid.uuid4().hex}")
        os.close(open_private(probe))
        os.unlink(probe)
    except OSError as err:
        return f"cannot write there ({err.strerror or _first_line(err)})"
    return None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


def _rebuild_store(root_url: str, key: bytes, cache_dir: str, allow_pickle: bool) -> ArtifactStore:
    return ArtifactStore(root_url, key, cache_dir=cache_dir, allow_pickle=allow_pickle)


__all__ = ["ArtifactRef", "ArtifactStore", "load_or_create_key", "root_problem", "root_url_from_env"]
