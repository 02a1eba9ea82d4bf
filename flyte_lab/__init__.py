"""flyte_lab: typed notebook workflows for Jupyter.

`%load_ext flyte_lab` registers the magics of `flyte_lab.magics`
(`%%flyte_setup`, `%%flyte_task`, `%flyte_graph`, `%flyte_run`, `%flyte_runs`,
`%flyte_load`, `%flyte_debug`). The Python API below is what the CLI uses; it
imports heavy packages (Dask, papermill) only when called.
"""

from __future__ import annotations

from typing import Any

from flyte_lab.errors import FlyteLabError

__all__ = ["FlyteLabError", "get_run", "load_ipython_extension", "run", "validate"]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    from flyte_lab.magics import register

    register(ipython)


def validate(path: str, params: dict[str, str] | None = None) -> Any:
    """Parse and validate a notebook; returns a `Workflow` with its diagnostics."""
    from flyte_lab.graph.validate import validate_notebook

    return validate_notebook(path, cli_params=params)


def run(path: str, params: dict[str, Any] | None = None, **options: Any) -> Any:
    """Validate then run a notebook; returns the run record (as `show --json`)."""
    from flyte_lab.engine.api import run_notebook

    return run_notebook(path, params or {}, **options)


def get_run(run_id: str) -> Any:
    """The record of one run (as `show --json`)."""
    from flyte_lab.engine.api import get_run as _get_run

    return _get_run(run_id)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension `flyte_lab` (REST API for the sidebar); see `flyte_lab/server`."""
    from flyte_lab.server import _jupyter_server_extension_points as points

    return points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    from flyte_lab.server import _jupyter_labextension_paths as paths

    return paths()
