"""Files only their owner can read: FLYTE_LAB_HOME is 0700, everything in it 0600.

The run store, the artifact key, artifacts and the artifact cache may hold
data and secrets; they are created private (explicit modes at creation, never
the process umask, which is shared by every thread of the process).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import uuid

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dirs(path: str | os.PathLike[str]) -> str:
    """Create `path` and any missing parents as 0700 folders; existing folders are left as they are."""
    path = os.path.abspath(os.fspath(path))
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def make_private_home(path: str | os.PathLike[str]) -> str:
    """FLYTE_LAB_HOME: created 0700; an existing home is tightened to 0700 as well."""
    home = make_private_dirs(path)
    if os.stat(home).st_mode & 0o077:
        os.chmod(home, DIR_MODE)
    return home


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create an empty 0600 file if it does not exist (SQLite then gives its -wal/-shm the same mode)."""
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: str | os.PathLike[str]) -> int:
    """A new file, 0600, opened for writing; fails if it exists (callers write temp names)."""
    return os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)


def write_private(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace `path` by a 0600 file holding `data`, atomically: written under a temp name in the same folder,
    then renamed, so a reader (another thread or process) never sees a partial file. The folder must exist;
    the temp file never outlives a failure."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{name}")
    try:
        with os.fdopen(open_private(tmp), "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


__all__ = ["create_private_file", "make_private_dirs", "make_private_home", "open_private", "write_private"]


def process_folder(prefix: str) -> str:
    """A new 0700 folder `PREFIX<pid>-XXXX` in the temporary folder, after removing this user's folders of
    that prefix whose process is gone (SIGKILL leaves them; they may hold keys)."""
    sweep_dead(prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")  # mkdtemp makes it 0700


def sweep_dead(prefix: str, parent: str | None = None) -> list[str]:
    """Remove this user's `PREFIX<pid>-*` folders whose pid no longer runs; the removed paths. A live
    process is never judged dead; a reused pid only delays the sweep."""
    parent = parent or tempfile.gettempdir()
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to judge
    return True
