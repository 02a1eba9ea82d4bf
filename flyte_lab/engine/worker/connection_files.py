"""Kernel connection files: a private folder per process, a random key per kernel.

A kernel listens on 127.0.0.1, where every local user can reach it; only the HMAC key in its connection
file keeps them from running code in it (a kernel with an empty key executes unsigned messages). So every
kernel flyte_lab starts (pooled, forked or started for one task) gets its own random key and
`hmac-sha256`, and its connection file lives, 0600, in this process's 0700 folder
`flyte-lab-kernels-PID-XXXXXXXX` under the temporary folder, and is removed when its kernel ends.

A process killed with SIGKILL cannot remove its folder: the next flyte_lab process of the same user that
makes one removes every such folder whose PID (in its name) no longer runs. A live process is never
judged dead; a reused PID only delays the sweep.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import threading
from typing import Any

from jupyter_client.connect import write_connection_file

from flyte_lab.private_fs import process_folder

PREFIX = "flyte-lab-kernels-"
SIGNATURE_SCHEME = "hmac-sha256"

_lock = threading.Lock()
_folder: str | None = None
_owner: int | None = None  # the pid that made `_folder` (a forked child must not remove its parent's)


def folder() -> str:
    """This process's private folder of connection files (0700; made on first use, removed at exit)."""
    with _lock:
        return _folder_locked()


def _folder_locked() -> str:
    global _folder, _owner
    if _folder is None or _owner != os.getpid() or not os.path.isdir(_folder):
        _folder = process_folder(PREFIX)
        if _owner is None:
            atexit.register(_remove_at_exit)
        _owner = os.getpid()
    return _folder


def new_path() -> str:
    """A fresh connection file name in the private folder (for a kernel manager to write its file at)."""
    with _lock:
        return os.path.join(_folder_locked(), f"kernel-{secrets.token_hex(8)}.json")


def write(kernel_name: str) -> tuple[str, dict[str, Any]]:
    """A new 0600 connection file on 127.0.0.1 with its own random key; its path and its connection info
    (the key as bytes, as jupyter_client compares it)."""
    with _lock:
        path = os.path.join(_folder_locked(), f"kernel-{secrets.token_hex(8)}.json")
        _, written = write_connection_file(path, ip="127.0.0.1", key=secrets.token_hex(32).encode(),
                                           signature_scheme=SIGNATURE_SCHEME, kernel_name=kernel_name)
    info: dict[str, Any] = dict(written)
    info["key"] = info["key"].encode()
    return path, info


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def release() -> None:
    """Remove the folder if no kernel's file is left in it (a later kernel makes a new one)."""
    global _folder
    with _lock:
        if _folder is not None and _owner == os.getpid():
            try:
                os.rmdir(_folder)
            except FileNotFoundError:
                pass
            except OSError:
                return  # a task's kernel still runs: its file goes with it, the folder at exit
            _folder = None


def _remove_at_exit() -> None:
    if _folder is not None and _owner == os.getpid():
        shutil.rmtree(_folder, ignore_errors=True)
