"""The IPython magics of flyte_lab (DESIGN.md sections 1 and 3b).

`%load_ext flyte_lab` calls `register`, which installs every class listed in
`MAGIC_CLASSES`:

- `task_magics`: `%%flyte_setup` and `%%flyte_task` (the notebook language in a live kernel);
- `graph_magic`: `%flyte_graph` (the validated graph of the notebook as saved);
- `run_magics`: `%flyte_run`, `%flyte_runs`, `%flyte_load` and `%flyte_debug` (runs, read from the run store).

What these need inside the kernel (value checks, the graph picture, the run
widget, loading a run's values) lives in `flyte_lab.kernel_ext`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Magics classes that `%load_ext flyte_lab` installs, as "module:Class"; modules import only at load time.
MAGIC_CLASSES: list[str] = [
    "flyte_lab.magics.task_magics:TaskMagics",
    "flyte_lab.magics.graph_magic:GraphMagics",
    "flyte_lab.magics.run_magics:RunMagics",
]


def register(ipython: Any) -> None:
    """Install every class of `MAGIC_CLASSES` into `ipython` (called by `load_ipython_extension`)."""
    for spec in MAGIC_CLASSES:
        module_name, _, class_name = spec.partition(":")
        ipython.register_magics(getattr(importlib.import_module(module_name), class_name))
