"""flyte_lab inside Jupyter: the server extension (REST API under /flyte-lab/api) and the prebuilt lab extension.

The REST layer is a reader of the run store and a launcher of ordinary runs; it holds no run state.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from flyte_lab.server.app import FlyteLabApp

    return [{"module": "flyte_lab.server", "app": FlyteLabApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "flyte-lab"}]
