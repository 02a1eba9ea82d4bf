"""What the libraries a `flyte-lab` command drives may print on its stderr.

A command reports what went wrong in one line of its own (`flyte-lab: error: ...`). Dask's `distributed` logs
the same events its own way: a client whose scheduler died (the shared executor killed, a tcp:// scheduler
gone) logs the broken connection at ERROR with a traceback, sometimes, depending on which side noticed first.
In the CLI those records only bury the one line that says what happened and what to do, so there the
libraries speak only at CRITICAL; `flyte-lab --debug` keeps their usual levels.

Only the CLI process does this (and its warm driver forks, which run the same `main`): a user's kernel running
`%flyte_run` may use Dask itself, and the other processes of flyte_lab (the shared executor, Jupyter launches)
write to log files, where these records help.
"""

from __future__ import annotations

import logging
import sys

QUIET = ("distributed", "tornado", "asyncio")
_quiet_here = False


def quiet_in_this_process() -> None:
    """From now on, in this process, the libraries in `QUIET` log at CRITICAL only."""
    global _quiet_here
    _quiet_here = True
    if "distributed" in sys.modules:
        after_dask_import()


def after_dask_import() -> None:
    """Reapply the quiet levels: importing `distributed` sets its loggers' levels (`distributed.config`)."""
    if not _quiet_here:
        return
    prefixes = tuple(f"{name}." for name in QUIET)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        # a child with a level of its own (Dask sets `distributed.client` to WARNING) would not inherit ours
        if name.startswith(prefixes) and isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            logger.setLevel(logging.CRITICAL)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
