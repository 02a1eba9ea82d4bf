"""Which notebook this kernel belongs to, and when it was saved.

A Jupyter server knows each kernel's notebook through its session, and
updates it when the notebook is renamed; the kernel only gets the path it
started with (`__session__` from ipykernel, `JPY_SESSION_NAME` from
jupyter_server). So the running servers of this user are asked first (their
`jpserver-*.json` files in the Jupyter runtime folder give URL and token),
and the start-up path is the fallback.
"""

from __future__ import annotations

import glob
import json
import os
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

SERVER_TIMEOUT_S = 2.0


def this_kernel_id() -> str | None:
    """The id of the kernel we run in, from its connection file (None outside a Jupyter kernel)."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not inside an ipykernel (a plain IPython shell, a test)
        return None
    if name.startswith("kernel-") and name.endswith(".json"):
        return name.removeprefix("kernel-").removesuffix(".json")
    return None


def running_servers() -> list[dict[str, Any]]:
    """The `jpserver-*.json` descriptions of this user's running Jupyter servers."""
    from jupyter_core.paths import jupyter_runtime_dir

    found = []
    for path in sorted(glob.glob(os.path.join(jupyter_runtime_dir(), "jpserver-*.json"))):
        try:
            with open(path, encoding="utf-8") as fh:
                found.append(json.load(fh))
        except (OSError, ValueError):
            continue  # a server that is stopping
    return found


def session_path_from_server(server: dict[str, Any], kernel_id: str) -> str | None:
    """The notebook of `kernel_id` as `server` knows it now (follows renames), or None."""
    url = str(server.get("url", "")).rstrip("/") + "/api/sessions"
    if not url.startswith(("http://", "https://")):
        return None
    request = urllib.request.Request(url)  # noqa: S310 - the scheme is checked above
    if server.get("token"):
        request.add_header("Authorization", f"token {server['token']}")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as response:  # noqa: S310
            sessions = json.load(response)
    except (OSError, ValueError):
        return None
    for session in sessions if isinstance(sessions, list) else []:
        if (session.get("kernel") or {}).get("id") == kernel_id and session.get("path"):
            root = server.get("root_dir") or server.get("notebook_dir") or ""
            return os.path.join(root, urllib.parse.unquote(str(session["path"])))
    return None


def kernel_notebook(user_ns: dict[str, Any], magic: str) -> str:
    """This kernel's notebook; a `UsageError` that says to pass the path when it cannot be found."""
    kernel_id = this_kernel_id()
    if kernel_id is not None:
        for server in running_servers():
            path = session_path_from_server(server, kernel_id)
            if path is not None and os.path.exists(path):
                return path
    session = user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    if not session:
        raise UsageError(f"%{magic}: this kernel does not know its notebook; pass the path: "
                         f"%{magic} path/to/notebook.ipynb")
    session = str(session)
    if os.path.exists(session):
        return session
    # the session path may be relative to the server root; the kernel starts in the notebook's folder
    local = os.path.basename(session)
    if os.path.exists(local):
        return local
    raise UsageError(f"%{magic}: this kernel's notebook `{session}` is not found from {os.getcwd()} (renamed "
                     f"or moved, and no running Jupyter server knows this kernel); pass the path: "
                     f"%{magic} path/to/notebook.ipynb")


def saved_note(path: str) -> str:
    """`pipe.ipynb as saved at 2026-01-01 12:00:00 UTC`: what a magic that reads the file shows."""
    stamp = datetime.fromtimestamp(os.path.getmtime(path), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{os.path.abspath(path)} as saved at {stamp}"
