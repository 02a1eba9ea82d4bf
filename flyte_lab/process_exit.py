"""How flyte_lab's own processes end: the CLI, and runs launched from Jupyter or the dashboard.

A driver's process holds Dask, papermill, nbclient and SQLAlchemy; as it exits, the interpreter's last
garbage collections walk all their objects: ~0.5 s, over 1 s on a loaded machine, after the run has ended
(a cancelled run's terminal, and anything waiting for the driver to be gone, waits for it). Nothing in
those cycles needs collecting at exit (atexit handlers still run, the OS closes what is open), so the
objects are frozen out of the collector first. Only in our own processes' entry points: the engine also
runs inside users' kernels and Jupyter servers, which go on living.
"""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    gc.freeze()
    sys.exit(code)
