"""The typed artifact store: task values in, content-addressed files out.

Every value is written under `ROOT/ab/abcdef….EXT`, where the name is the
sha256 of the stored bytes, so equal values share one file and a file never
changes once written. The codec follows the declared type (see `codecs.py`
for JSON): Parquet for DataFrames, `.npy` for arrays, a copied file or folder
for `pathlib.Path`, and cloudpickle, signed with HMAC-SHA256, for everything
else. Reading checks that the URI names a key of this store before touching
it, and checks the signature before unpickling anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from flyte_lab.engine import codecs
from flyte_lab.errors import ArtifactError
from flyte_lab.graph.model import TypeRef

_EXT = {"json": "json", "parquet": "parquet", "npy": "npy", "pickle": "pkl", "path": "path"}
_CODEC_OF_EXT = {ext: codec for codec, ext in _EXT.items()}
KEY_RE = re.compile(r"^[0-9a-f]{2}/([0-9a-f]{64})\.(json|parquet|npy|pkl|path)$")
_PICKLE_MAGIC = b"FLYTE_LAB_PICKLE_V1\n"
_SIG_SIZE = hashlib.sha256().digest_size
_PREVIEW_LIMIT = 200


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stored value lives and how to read it back."""

    uri: str
    codec: str  # "json" | "parquet" | "npy" | "path" | "pickle"
    content_hash: str  # sha256 of the stored bytes (for a path: of its manifest)
    preview: str  # <= 200 characters, for tables and dashboards
    warning: str | None = None  # set for pickle: the class that travels by cloudpickle

    def as_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "codec": self.codec, "content_hash": self.content_hash,
                "preview": self.preview}


class ArtifactStore:
    """Content-addressed artifacts under one fsspec root (`file://`, `memory://`, `s3://`…)."""

    def __init__(self, root_url: str, hmac_key: bytes, *, cache_dir: str | None = None) -> None:
        if not hmac_key:
            raise ArtifactError("the artifact HMAC key is empty; set FLYTE_LAB_ARTIFACT_KEY to hex bytes")
        if "::" in root_url:
            raise ArtifactError(f"chained fsspec URLs are not supported as artifact root: {root_url}")
        self._key = bytes(hmac_key)
        fs, root = url_to_fs(root_url)
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            root = os.path.abspath(os.path.expanduser(root))
            os.makedirs(root, exist_ok=True)
            self._real_root = os.path.realpath(root)
        self._root = root.rstrip("/")
        self.root_url = fs.unstrip_protocol(self._root)
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self._protocols = set(protocols)
        digest = hashlib.sha256(self.root_url.encode()).hexdigest()[:16]
        self._cache_dir = cache_dir or os.path.join(
            tempfile.gettempdir(), f"flyte_lab-{os.getuid()}-cache-{digest}")

    @property
    def hmac_key_hex(self) -> str:
        """The signing key, for the driver to hand to workers (never generated per machine)."""
        return self._key.hex()

    def __reduce__(self) -> tuple[Any, ...]:
        # the store crosses Dask to workers: rebuild it from its settings, not its fs object
        return (_rebuild_store, (self.root_url, self._key, self._cache_dir))

    @classmethod
    def from_env(cls, home: str | None = None) -> ArtifactStore:
        home = os.path.expanduser(home or os.environ.get("FLYTE_LAB_HOME") or "~/.flyte_lab")
        root = os.environ.get("FLYTE_LAB_ARTIFACTS") or os.path.join(home, "artifacts")
        key_hex = os.environ.get("FLYTE_LAB_ARTIFACT_KEY")
        if key_hex:
            try:
                key = bytes.fromhex(key_hex.strip())
            except ValueError:
                raise ArtifactError("FLYTE_LAB_ARTIFACT_KEY is not hex; use e.g. the output of "
                                    "`python -c 'import secrets; print(secrets.token_hex(32))'`") from None
        else:
            key = load_or_create_key(os.path.join(home, "artifact.key"))
        return cls(root, key, cache_dir=os.path.join(home, "artifact-cache"))

    # -- writing ------------------------------------------------------------------------------

    def put(self, value: Any, type_ref: TypeRef, namespace: dict[str, Any] | None = None) -> ArtifactRef:
        """Store `value` as its declared type; `namespace` resolves dataclass field annotations
        when the class's module is not the kernel namespace."""
        return self._put(value, type_ref, namespace)

    def _put(self, value: Any, spec: Any, namespace: dict[str, Any] | None = None) -> ArtifactRef:
        shape = codecs.shape_of(spec)
        if shape.kind == "union" and value is not None:
            arms = [a for a in shape.args if codecs.shape_of(a).kind != "none"]
            if len(arms) == 1:  # Optional[T] holding a T is stored as a T
                return self._put(value, arms[0], namespace)
            for arm in arms:  # a file-like arm the value matches gets its own codec
                kind = codecs.shape_of(arm).kind
                if kind in codecs.NESTED_KINDS and _matches(value, kind):
                    return self._put(value, arm, namespace)
        kind = shape.kind
        if value is not None and kind == "any":  # no declared type: the value's natural codec
            kind = next((k for k in ("dataframe", "ndarray") if _matches(value, k)), "any")
        if value is not None and kind in codecs.NESTED_KINDS:
            codecs.check_nested(value, spec, kind)
            if kind == "path":
                return self._put_path(Path(os.fspath(value)))
            return self._put_table_or_array(value, kind)
        if value is not None and kind == "other":
            return self._put_pickle(value, codecs.qualname(type(value)))
        ctx = codecs.Context(namespace, put_nested=lambda v, s: self._key_of(self._put(v, s, namespace).uri))
        try:
            data = codecs.canonical_json(codecs.encode(value, spec, ctx))
        except codecs.NotJson as exc:
            return self._put_pickle(value, exc.qualname)
        return self._ref(self.write_blob(data, "json"), "json", data, codecs.preview_of(value))

    def _put_table_or_array(self, value: Any, kind: str) -> ArtifactRef:
        try:
            if kind == "dataframe":
                import pyarrow as pa
                import pyarrow.parquet as pq

                buffer = io.BytesIO()
                # preserve_index=None keeps a RangeIndex as metadata and any other index as columns
                pq.write_table(pa.Table.from_pandas(value, preserve_index=None), buffer)
                rows, cols = value.shape
                names = ", ".join(str(c) for c in value.columns)
                preview = f"DataFrame {rows}x{cols} [{names}]"
                codec = "parquet"
            else:
                import numpy as np

                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                preview = f"ndarray {value.dtype} {value.shape}"
                codec = "npy"
        except (ValueError, TypeError, ImportError) as exc:  # object columns, object arrays
            return self._put_pickle(value, codecs.qualname(type(value)), reason=str(exc))
        data = buffer.getvalue()
        return self._ref(self.write_blob(data, _EXT[codec]), codec, data, _clip(preview))

    def _put_pickle(self, value: Any, cls_name: str, reason: str = "") -> ArtifactRef:
        import cloudpickle

        payload = cloudpickle.dumps(value)
        data = _PICKLE_MAGIC + self._sign(payload) + payload
        warning = (f"{cls_name} travels by cloudpickle: only code with the same class definitions and "
                   "library versions can read it back")
        if reason:
            warning += f" ({reason[:200]})"
        key = self.write_blob(data, "pkl")
        return self._ref(key, "pickle", data, codecs.preview_of(value), warning)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"flyte_lab/pickle/v1\0" + payload, hashlib.sha256).digest()

    def _ref(self, key: str, codec: str, data: bytes, preview: str, warning: str | None = None
             ) -> ArtifactRef:
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
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # a temp name in the same folder, then rename: readers never see a partial file
            tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        else:
            self.fs.pipe_file(path, data)
        return key

    # -- reading ------------------------------------------------------------------------------

    def get(self, uri: str, type_ref: TypeRef, namespace: dict[str, Any] | None = None) -> Any:
        return self._get(self._key_of(uri), type_ref, namespace)

    def _get(self, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
        digest, ext = KEY_RE.match(key).groups()  # type: ignore[union-attr]  # checked by _key_of
        codec = _CODEC_OF_EXT[ext]
        if codec == "path":
            return self._get_path(key, digest)
        data = self._read(key)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"artifact {self.uri_of(key)} does not match its content hash; "
                                "it was modified after it was written", uri=self.uri_of(key))
        if codec == "json":
            ctx = codecs.Context(namespace, get_nested=lambda k, s: self._get(self._checked_key(k), s,
                                                                              namespace))
            return codecs.decode(json.loads(data), spec, ctx)
        if codec == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data)).to_pandas()
        if codec == "npy":
            import numpy as np

            return np.load(io.BytesIO(data), allow_pickle=False)
        return self._unpickle(key, data)

    def _unpickle(self, key: str, data: bytes) -> Any:
        head = len(_PICKLE_MAGIC)
        signature, payload = data[head:head + _SIG_SIZE], data[head + _SIG_SIZE:]
        # the signature is checked before a single byte of the payload is unpickled
        if not data.startswith(_PICKLE_MAGIC) or not hmac.compare_digest(signature, self._sign(payload)):
            raise ArtifactError(
                f"refusing to unpickle {self.uri_of(key)}: its HMAC signature does not match this store's "
                "key (the file was tampered with, or written with another FLYTE_LAB_ARTIFACT_KEY)",
                uri=self.uri_of(key))
        import cloudpickle

        return cloudpickle.loads(payload)

    def _read(self, key: str) -> bytes:
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

    # -- files and folders (`pathlib.Path`) ---------------------------------------------------
    # Layout: `ab/<hash>.path/manifest.json` + `ab/<hash>.path/data/<name>`, where <hash> is the
    # sha256 of the canonical manifest {name, kind, files: [[rel, sha256, size]], dirs}.

    def _put_path(self, src: Path) -> ArtifactRef:
        if not src.exists():
            raise ArtifactError(f"output path {src} does not exist; write the file before the task ends",
                                path=str(src))
        name = src.resolve().name or "root"
        if not self.local:
            manifest = _manifest(src, name, {rel: _hash_file(p) for rel, p in _walk(src).items()})
            data = codecs.canonical_json(manifest)
            key = self._key_for_manifest(data)
            final = self.path_of(key)
            if not self.fs.exists(final + "/manifest.json"):
                for rel, _sha, _size in manifest["files"]:
                    self.fs.put_file(str(_join(str(src), rel)), _join(f"{final}/data/{name}", rel))
                self.fs.pipe_file(final + "/manifest.json", data)  # last: marks the folder complete
            return self._path_ref(key, data, manifest)
        # local: copy into a temp folder while hashing, then rename into place in one step
        tmp = os.path.join(self._root, ".tmp", uuid.uuid4().hex)
        try:
            target = os.path.join(tmp, "data", name)
            hashes = {}
            for rel, local in _walk(src).items():
                dest = _join(target, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                hashes[rel] = _hash_file(local, copy_to=dest)
            manifest = _manifest(src, name, hashes)
            for rel in manifest["dirs"]:
                os.makedirs(_join(target, rel), exist_ok=True)
            data = codecs.canonical_json(manifest)
            with open(os.path.join(tmp, "manifest.json"), "wb") as fh:
                fh.write(data)
            key = self._key_for_manifest(data)
            final = self.path_of(key)
            if not os.path.exists(final):
                os.makedirs(os.path.dirname(final), exist_ok=True)
                with contextlib.suppress(OSError):  # lost a race: the winner wrote the same content
                    os.rename(tmp, final)
            if not os.path.exists(os.path.join(final, "manifest.json")):
                raise ArtifactError(f"could not store {src} as {self.uri_of(key)}", path=str(src))
            return self._path_ref(key, data, manifest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _key_for_manifest(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        return f"{digest[:2]}/{digest}.path"

    def _path_ref(self, key: str, data: bytes, manifest: dict[str, Any]) -> ArtifactRef:
        preview = manifest["name"]
        if manifest["kind"] == "dir":
            preview += f"/ ({len(manifest['files'])} files)"
        return self._ref(key, "path", data, preview)

    def _get_path(self, key: str, digest: str) -> Path:
        if self.local:
            return _verified_copy(self.path_of(key), digest, self._root, self._real_root)
        cache_root = os.path.realpath(self._cache_dir)
        final = os.path.join(cache_root, key)
        if os.path.exists(os.path.join(final, "manifest.json")):
            return _verified_copy(final, digest, cache_root, cache_root)
        data = self._read(key + "/manifest.json")
        manifest = _load_manifest(data, digest, self.uri_of(key))
        tmp = os.path.join(cache_root, ".tmp", uuid.uuid4().hex)
        try:
            target = os.path.join(tmp, "data", manifest["name"])
            for rel in manifest["dirs"]:
                os.makedirs(_join(target, rel), exist_ok=True)
            for rel, sha, _size in manifest["files"]:
                dest = _join(target, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                self.fs.get_file(_join(f"{self.path_of(key)}/data/{manifest['name']}", rel), dest)
                if _hash_file(Path(dest))[0] != sha:
                    raise ArtifactError(f"file {rel or manifest['name']} of {self.uri_of(key)} does not "
                                        "match its manifest; it was modified after it was written")
            with open(os.path.join(tmp, "manifest.json"), "wb") as fh:
                fh.write(data)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with contextlib.suppress(OSError):  # another reader cached it first
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return _verified_copy(final, digest, cache_root, cache_root)

    # -- keys and URIs ------------------------------------------------------------------------

    def path_of(self, key: str) -> str:
        return f"{self._root}/{key}"

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
        prefix = self._root + "/"
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

    def check_inside(self, path: str, uri: str) -> None:
        if not _is_inside(path, self._root, self._real_root):
            raise _outside(uri, self.root_url)


def _is_inside(path: str, base: str, base_real: str) -> bool:
    """Resolve symlinks ourselves: no link under `base` may lead anywhere else."""
    return os.path.realpath(path) == os.path.join(base_real, os.path.relpath(path, base))


def _join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if rel else base


def _walk(src: Path) -> dict[str, Path]:
    """Relative posix name -> file, for a file ("" -> itself) or every file under a folder."""
    if src.is_file():
        return {"": src}
    out: dict[str, Path] = {}

    def visit(folder: Path, rel: str, seen: frozenset[str]) -> None:
        real = os.path.realpath(folder)
        if real in seen:
            raise ArtifactError(f"symlink loop at {folder}; replace the link by a copy", path=str(folder))
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir():
                out[sub + "/"] = Path(entry.path)  # a folder: recorded so empty folders survive
                visit(Path(entry.path), sub, seen | {real})
            elif entry.is_file():
                out[sub] = Path(entry.path)
            else:
                raise ArtifactError(f"{entry.path} is not a regular file (a broken link, a socket…); "
                                    "remove it from the output folder", path=entry.path)

    visit(src, "", frozenset())
    return out


def _hash_file(src: Path, copy_to: str | None = None) -> tuple[str, int]:
    if str(src).endswith("/") or src.is_dir():
        return ("", -1)  # folders carry no content
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fh, (open(copy_to, "wb") if copy_to else contextlib.nullcontext()) as out:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    return digest.hexdigest(), size


def _manifest(src: Path, name: str, hashes: dict[str, tuple[str, int]]) -> dict[str, Any]:
    files = sorted([rel, sha, size] for rel, (sha, size) in hashes.items() if size >= 0)
    dirs = sorted(rel for rel, (_sha, size) in hashes.items() if size < 0)
    return {"name": name, "kind": "file" if src.is_file() else "dir", "files": files, "dirs": dirs}


def _load_manifest(data: bytes, digest: str, where: str) -> dict[str, Any]:
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError(f"the manifest of {where} does not match its hash; it was modified", uri=where)
    manifest = json.loads(data)
    rels = [manifest["name"], *(r for r, _s, _n in manifest["files"]), *manifest["dirs"]]
    for rel in rels:  # names come from the store, but a hand-edited store must not escape
        if rel and any(part in ("", ".", "..") for part in rel.removesuffix("/").split("/")):
            raise ArtifactError(f"the manifest of {where} names an unsafe path {rel!r}", uri=where)
    return manifest


def _verified_copy(folder: str, digest: str, base: str, base_real: str) -> Path:
    """Check a stored/cached path artifact against its manifest; return the user's file/folder."""
    if not _is_inside(folder, base, base_real) or not _is_inside(f"{folder}/manifest.json", base, base_real):
        raise _outside(folder, base)
    try:
        with open(os.path.join(folder, "manifest.json"), "rb") as fh:
            manifest = _load_manifest(fh.read(), digest, folder)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {folder} does not exist", uri=folder) from None
    target = os.path.join(folder, "data", manifest["name"])
    for rel, _sha, size in manifest["files"]:
        path = _join(target, rel)
        if not _is_inside(path, base, base_real):
            raise _outside(path, base)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            raise ArtifactError(f"file {path} of a stored path artifact is missing or changed", uri=folder)
    return Path(target)


def _matches(value: Any, kind: str) -> bool:
    if kind == "path":
        return isinstance(value, os.PathLike)
    return codecs.is_dataframe(value) if kind == "dataframe" else codecs.is_ndarray(value)


def _clip(text: str) -> str:
    return text if len(text) <= _PREVIEW_LIMIT else text[: _PREVIEW_LIMIT - 1] + "…"


def _outside(uri: Any, root: str) -> ArtifactError:
    return ArtifactError(f"refusing artifact URI {uri!r}: it is not an artifact of the store at {root}",
                         uri=str(uri))


def _rebuild_store(root_url: str, key: bytes, cache_dir: str) -> ArtifactStore:
    return ArtifactStore(root_url, key, cache_dir=cache_dir)


def load_or_create_key(path: str) -> bytes:
    """Read the HMAC key, creating it (0600) if missing; racing processes end with the same key."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        # link() fails if the key exists: the first process wins, the others read its key
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    with open(path) as fh:
        text = fh.read().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ArtifactError(f"the artifact key file {path} is not a hex key of at least 16 bytes; "
                            "delete it to create a new one (old pickled artifacts become unreadable)")
    return key


__all__ = ["ArtifactRef", "ArtifactStore", "load_or_create_key"]
