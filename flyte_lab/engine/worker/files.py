"""Files a worker touches: its private directory, the artifact key file, and I/O by URL.

The private directory (0700, one per worker process) holds what no other user
may read: the artifact HMAC key the driver sent (a 0600 file, named by a hash
of the key, so the key never appears in a notebook, a log or a path) and the
artifact cache. Executed notebooks and result files go through fsspec, since a
worker may share no filesystem with the driver.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import threading

from flyte_lab.private_fs import make_private_dirs, process_folder, write_private

_lock = threading.Lock()
_private: str | None = None


def private_dir() -> str:
    """This process's private directory (created 0700 on first use, removed at exit)."""
    global _private
    with _lock:
        if _private is None or not os.path.isdir(_private):
            # pid-named: a killed worker's folder (it holds the artifact key) is swept by the next one
            _private = process_folder("flyte-lab-worker-")
            atexit.register(shutil.rmtree, _private, True)
        return _private


def private_subdir(name: str) -> str:
    return make_private_dirs(os.path.join(private_dir(), name))


def artifact_key_file(key_hex: str) -> str:
    """A 0600 file holding the driver's artifact key; its path says nothing about the key."""
    key = bytes.fromhex(key_hex.strip())
    if not key:
        raise ValueError("the artifact key sent by the driver is empty")
    name = hashlib.sha256(b"flyte-lab-key-file:" + key).hexdigest()[:32]
    path = os.path.join(private_subdir("keys"), name)
    if not os.path.exists(path):
        write_private(path, key)
    return path


def cache_dir() -> str:
    """The artifact cache of this worker (private, never the driver's home)."""
    return private_subdir("artifact-cache")


# -- I/O by URL ---------------------------------------------------------------------------------------------------


def write_bytes(url: str, data: bytes) -> None:
    """Write a whole file at a path or fsspec URL, creating its folder; local writes are atomic and private
    (folders 0700, files 0600)."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    parent = fs._parent(path)
    if "file" in _protocols(fs):
        # a local root may lie outside the private home (FLYTE_LAB_ARTIFACTS): private whatever the umask
        make_private_dirs(parent)
        write_private(path, data)
        return
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as out:
        out.write(data)


def read_bytes(url: str) -> bytes:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as src:
        data: bytes = src.read()
    return data


def _protocols(fs: object) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
