"""The artifact store's HMAC key: one hex key file per FLYTE_LAB_HOME, created once, private (0600)."""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid

from flyte_lab.errors import ArtifactError
from flyte_lab.private_fs import make_private_dirs


def load_or_create_key(path: str) -> bytes:
    """Read the HMAC key, creating it (0600) if missing; racing processes end with the same key."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    make_private_dirs(os.path.dirname(path) or ".")
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


__all__ = ["load_or_create_key"]
