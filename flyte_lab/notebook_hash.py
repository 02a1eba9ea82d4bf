"""The one notebook hash: what a run and a schedule store to tell later that their notebook was edited.

The sha256 of the file's bytes, as hex; stored values depend on it, so it never changes. Stdlib only: the
store, the scheduler and the engine import it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def hash_notebook(path: str | os.PathLike[str]) -> str | None:
    """The notebook file's hash, or None when it cannot be read (gone, a folder, a path the OS refuses)."""
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError):
        return None
    return hashlib.sha256(data).hexdigest()
