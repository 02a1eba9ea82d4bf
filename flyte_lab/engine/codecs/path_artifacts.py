"""Files and folders (`pathlib.Path`) as artifacts (`.path`): manifests, hashing, private copies.

A stored path is `ab/<hash>.path/manifest.json` + `ab/<hash>.path/data/<name>`,
where <hash> is the sha256 of the canonical manifest `{name, kind, files:
[[rel, sha256, size]], dirs}`. Every file is checked against the sha256 its
manifest records (never only its size), and every read hands the task a fresh
copy in a private temp folder: a task that edits its input in place edits its
own copy, never the store or the cache. A local store copies into a temp folder
while hashing and renames it into place; a remote one uploads the data, then the
manifest (which marks the folder complete); a remote read downloads once into
the worker's private cache.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.codecs.typed_json import canonical_json
from flyte_lab.errors import ArtifactError
from flyte_lab.private_fs import FILE_MODE, make_private_dirs, open_private

if TYPE_CHECKING:
    from flyte_lab.engine.artifacts import ArtifactRef, ArtifactStore

_private_copies: list[str] = []


def join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if rel else base


def is_inside(path: str, base: str, base_real: str) -> bool:
    """Resolve symlinks ourselves: no link under `base` may lead anywhere else."""
    return os.path.realpath(path) == os.path.join(base_real, os.path.relpath(path, base))


def walk(src: Path) -> dict[str, Path]:
    """Relative posix name -> file, for a file ("" -> itself) or every file under a folder.

    Folders are recorded with a trailing slash so that empty folders survive.
    """
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
                out[sub + "/"] = Path(entry.path)
                visit(Path(entry.path), sub, seen | {real})
            elif entry.is_file():
                out[sub] = Path(entry.path)
            else:
                raise ArtifactError(f"{entry.path} is not a regular file (a broken link, a socket…); "
                                    "remove it from the output folder", path=entry.path)

    visit(src, "", frozenset())
    return out


def hash_file(src: Path | str, copy_to: str | None = None) -> tuple[str, int]:
    """(sha256, size) of a file, copying it to `copy_to` (a new 0600 file) on the way; ("", -1) for a folder."""
    if str(src).endswith("/") or os.path.isdir(src):
        return ("", -1)  # folders carry no content
    digest, size = hashlib.sha256(), 0
    out = os.fdopen(open_private(copy_to), "wb") if copy_to else contextlib.nullcontext()
    with open(src, "rb") as fh, out as sink:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    return digest.hexdigest(), size


def build_manifest(src: Path, name: str, hashes: dict[str, tuple[str, int]]) -> dict[str, Any]:
    files = sorted([rel, sha, size] for rel, (sha, size) in hashes.items() if size >= 0)
    dirs = sorted(rel for rel, (_sha, size) in hashes.items() if size < 0)
    return {"name": name, "kind": "file" if src.is_file() else "dir", "files": files, "dirs": dirs}


def load_manifest(data: bytes, digest: str, where: str) -> dict[str, Any]:
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError(f"the manifest of {where} does not match its hash; it was modified", uri=where)
    manifest = json.loads(data)
    rels = [manifest["name"], *(r for r, _s, _n in manifest["files"]), *manifest["dirs"]]
    for rel in rels:  # names come from the store, but a hand-edited store must not escape
        if rel and any(part in ("", ".", "..") for part in rel.removesuffix("/").split("/")):
            raise ArtifactError(f"the manifest of {where} names an unsafe path {rel!r}", uri=where)
    return manifest


def read_stored_manifest(folder: str, digest: str, base: str, base_real: str) -> dict[str, Any]:
    """The manifest of a stored or cached path artifact folder, checked against its hash."""
    manifest_path = f"{folder}/manifest.json"
    if not is_inside(folder, base, base_real) or not is_inside(manifest_path, base, base_real):
        raise ArtifactError(f"refusing artifact {folder}: it leads outside {base}", uri=folder)
    try:
        with open(manifest_path, "rb") as fh:
            return load_manifest(fh.read(), digest, folder)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {folder} does not exist", uri=folder) from None


def private_copy(folder: str, manifest: dict[str, Any], base: str, base_real: str) -> Path:
    """Copy the data of a stored/cached path artifact into a fresh private temp folder, checking every
    file's sha256 on the way; the copy is the task's own (removed when the process exits)."""
    name = manifest["name"]
    source = os.path.join(folder, "data", name)
    dest_root = tempfile.mkdtemp(prefix="flyte_lab-input-")  # 0700
    _remember(dest_root)
    target = os.path.join(dest_root, name)
    try:
        if manifest["kind"] == "dir":
            os.makedirs(target)
        for rel in manifest["dirs"]:
            os.makedirs(join(target, rel.removesuffix("/")), exist_ok=True)
        for rel, sha, _size in manifest["files"]:
            path = join(source, rel)
            if not is_inside(path, base, base_real):
                raise ArtifactError(f"refusing artifact file {path}: it leads outside {base}", uri=folder)
            dest = join(target, rel)
            make_private_dirs(os.path.dirname(dest))
            try:
                got = hash_file(path, copy_to=dest)[0]
            except FileNotFoundError:
                got = None
            if got != sha:
                raise ArtifactError(f"file {path} of a stored path artifact is missing or changed "
                                    "(its sha256 does not match the manifest)", uri=folder)
    except BaseException:
        shutil.rmtree(dest_root, ignore_errors=True)
        raise
    return Path(target)


def _remember(folder: str) -> None:
    if not _private_copies:
        atexit.register(_remove_private_copies)
    _private_copies.append(folder)


def _remove_private_copies() -> None:
    while _private_copies:
        shutil.rmtree(_private_copies.pop(), ignore_errors=True)


# -- the codec: the store's reader and writer ---------------------------------------------------

def write(store: ArtifactStore, value: Any, spec: Any, namespace: dict[str, Any] | None) -> ArtifactRef:
    src = Path(os.fspath(value))
    if not src.exists():
        raise ArtifactError(f"output path {src} does not exist; write the file before the task ends",
                            path=str(src))
    name = src.resolve().name or "root"
    if not store.local:
        manifest = build_manifest(src, name, {rel: hash_file(p) for rel, p in walk(src).items()})
        data = canonical_json(manifest)
        key = _key_for_manifest(data)
        final = store.path_of(key)
        if not store.fs.exists(final + "/manifest.json"):
            for rel, _sha, _size in manifest["files"]:
                store.fs.put_file(str(join(str(src), rel)), join(f"{final}/data/{name}", rel))
            store.fs.pipe_file(final + "/manifest.json", data)  # last: marks the folder complete
        return _path_ref(store, key, data, manifest)
    # local: copy into a temp folder while hashing, then rename into place in one step
    tmp = os.path.join(store.root_path, ".tmp", uuid.uuid4().hex)
    try:
        target = os.path.join(tmp, "data", name)
        # an empty folder has no file whose copy would create it
        make_private_dirs(target if src.is_dir() else os.path.dirname(target))
        hashes = {}
        for rel, local in walk(src).items():
            dest = join(target, rel)
            make_private_dirs(os.path.dirname(dest))
            hashes[rel] = hash_file(local, copy_to=dest)
        manifest = build_manifest(src, name, hashes)
        for rel in manifest["dirs"]:
            make_private_dirs(join(target, rel))
        data = canonical_json(manifest)
        fd = open_private(os.path.join(tmp, "manifest.json"))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        key = _key_for_manifest(data)
        final = store.path_of(key)
        if not os.path.exists(final):
            make_private_dirs(os.path.dirname(final))
            with contextlib.suppress(OSError):  # lost a race: the winner wrote the same content
                os.rename(tmp, final)
        if not os.path.exists(os.path.join(final, "manifest.json")):
            raise ArtifactError(f"could not store {src} as {store.uri_of(key)}", path=str(src))
        return _path_ref(store, key, data, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read(store: ArtifactStore, key: str, spec: Any, namespace: dict[str, Any] | None) -> Path:
    """A fresh private copy of the stored file/folder, every file checked against its sha256."""
    digest = store.digest_of(key)
    if store.local:
        folder = store.path_of(key)
        manifest = read_stored_manifest(folder, digest, store.root_path, store.real_root)
        return private_copy(folder, manifest, store.root_path, store.real_root)
    cache_root = os.path.realpath(make_private_dirs(store.cache_dir))
    final = os.path.join(cache_root, key)
    if os.path.exists(os.path.join(final, "manifest.json")):
        manifest = read_stored_manifest(final, digest, cache_root, cache_root)
        try:
            return private_copy(final, manifest, cache_root, cache_root)
        except ArtifactError:  # a damaged cache entry: drop it and download again
            shutil.rmtree(final, ignore_errors=True)
    _download(store, key, digest, cache_root, final)
    manifest = read_stored_manifest(final, digest, cache_root, cache_root)
    return private_copy(final, manifest, cache_root, cache_root)


def _download(store: ArtifactStore, key: str, digest: str, cache_root: str, final: str) -> None:
    data = store.read_raw(key + "/manifest.json")
    manifest = load_manifest(data, digest, store.uri_of(key))
    tmp = os.path.join(cache_root, ".tmp", uuid.uuid4().hex)
    try:
        target = os.path.join(tmp, "data", manifest["name"])
        # an empty folder has no file whose copy would create it
        make_private_dirs(os.path.dirname(target) if manifest["kind"] == "file" else target)
        for rel in manifest["dirs"]:
            make_private_dirs(join(target, rel))
        for rel, sha, _size in manifest["files"]:
            dest = join(target, rel)
            make_private_dirs(os.path.dirname(dest))
            store.fs.get_file(join(f"{store.path_of(key)}/data/{manifest['name']}", rel), dest)
            os.chmod(dest, FILE_MODE)
            if hash_file(dest)[0] != sha:
                raise ArtifactError(f"file {rel or manifest['name']} of {store.uri_of(key)} does not "
                                    "match its manifest; it was modified after it was written")
        fd = open_private(os.path.join(tmp, "manifest.json"))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        make_private_dirs(os.path.dirname(final))
        with contextlib.suppress(OSError):  # another reader cached it first
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _key_for_manifest(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest}.path"


def _path_ref(store: ArtifactStore, key: str, data: bytes, manifest: dict[str, Any]) -> ArtifactRef:
    preview = manifest["name"]
    if manifest["kind"] == "dir":
        preview += f"/ ({len(manifest['files'])} files)"
    return store.ref(key, "path", data, preview)
