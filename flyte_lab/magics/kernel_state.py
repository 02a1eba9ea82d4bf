"""What the magics remember about one kernel: the names its `%%flyte_setup` cells bound.

A `%%flyte_task` body may read those (they exist in every task of a run);
any other name that only the kernel knows came from an exploration cell.
"""

from __future__ import annotations

import weakref
from typing import Any

_SETUP_NAMES: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def setup_names(shell: Any) -> set[str]:
    """The names bound by the `%%flyte_setup` cells run so far in `shell` (a live set)."""
    names = _SETUP_NAMES.get(shell)
    if names is None:
        names = _SETUP_NAMES[shell] = set()
    return names


def setup_ran(shell: Any) -> bool:
    return shell in _SETUP_NAMES
