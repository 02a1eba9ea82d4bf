"""Notebook paths from the browser, confined to the Jupyter server's root.

A path is the Lab's relative path (`dir/nb.ipynb`). Absolute paths, `..` segments and symlinks that
lead out of the root are all the same answer: not found (404), so the API reveals nothing outside it.
Stored runs and schedules name their notebook by absolute path; `relative_to_root` is the one test of
whether the server may show or act on them.
"""

from __future__ import annotations

import os
from pathlib import Path

from flyte_lab.errors import UserInputError


class PathOutsideRoot(UserInputError):
    """A notebook path that is not inside the server's root (or does not exist there)."""

    http_status = 404


def resolve_notebook(root_dir: str, rel: str, *, must_exist: bool = True) -> Path:
    """The real path of `rel` under `root_dir`; `PathOutsideRoot` for anything else."""
    shown = rel
    if not rel or "\x00" in rel:
        raise PathOutsideRoot("give a notebook path relative to the Jupyter root (`path=dir/notebook.ipynb`)")
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith(("/", "\\")) or os.path.isabs(rel) or ".." in parts:
        raise PathOutsideRoot(f"no notebook `{shown}` under the Jupyter root")
    root = Path(root_dir).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise PathOutsideRoot(f"no notebook `{shown}` under the Jupyter root")
    if must_exist and not target.is_file():
        raise PathOutsideRoot(f"no notebook `{shown}` under the Jupyter root")
    return target


def relative_to_root(root_dir: str, absolute: str) -> str | None:
    """The Lab path of a stored absolute notebook path, or None when it lies outside the root.

    The test on real paths, as they are now: a stored path whose folder or file has since become a symlink
    that leads out of the root is outside; a notebook renamed or deleted inside the root stays inside.
    """
    root = Path(root_dir).resolve()
    try:
        return Path(absolute).resolve().relative_to(root).as_posix()
    except ValueError:
        return None
