"""Runs and schedules follow a notebook renamed or moved in Jupyter.

Jupyter's contents manager emits an event for every rename (a file or a folder, from Lab's file browser, a
notebook's own rename, or the contents REST API); the listener moves the stored runs and schedules of the old path
to the new one, so the sidebar, `flyte-lab runs --notebook` and the scheduler find them under the name the
notebook has now. A move made outside Jupyter (`mv` in a terminal) is not seen: the runs keep the old path.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"


def follow_renames(serverapp: Any, log: logging.Logger) -> None:
    """Listen to the server's contents events; a rename moves what the store keeps under the old path."""
    root = Path(serverapp.root_dir).resolve()

    async def on_contents_event(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if data.get("action") != "rename" or not data.get("source_path") or not data.get("path"):
            return
        # the old path is gone: resolve its folder only (as the store's paths were resolved when it existed)
        old = root / data["source_path"].strip("/")
        old = old.parent.resolve() / old.name
        new = (root / data["path"].strip("/")).resolve()
        if root not in new.parents:
            return
        await asyncio.get_running_loop().run_in_executor(None, _move, str(old), str(new), log)

    serverapp.event_logger.add_listener(schema_id=CONTENTS_EVENTS, listener=on_contents_event)


def _move(old: str, new: str, log: logging.Logger) -> None:
    from flyte_lab.errors import NoStore
    from flyte_lab.store.shared import shared_store

    try:
        moved = shared_store().move_notebook(old, new)
    except NoStore:  # nothing was ever run here: nothing to follow
        return
    if moved:
        log.info("flyte_lab: %d runs and schedules of %s now name %s", moved, old, new)
