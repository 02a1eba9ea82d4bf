"""Processes whose memory only root may read: every flyte_lab process that holds a `--env K=$NAME` secret.

On Linux any process of the same user may read another's `/proc/PID/environ` (its environment as it was at
exec) and, where ptrace is allowed, `/proc/PID/mem`. A process made non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`)
has those files owned by root: other processes of its user are refused, root is not. It also writes no core
dump and cannot be traced by its user (no py-spy or gdb without root). The flag survives `fork` but not
`exec`, so kernels and other programs started from such a process are ordinary again.

A Dask scheduler of a `tcp://` cluster holds each task's arguments, secrets included, until the task is done;
it needs nothing of flyte_lab, so it is not made non-dumpable unless started with
`dask scheduler --preload flyte_lab.private_process` (`dask_setup` below; a worker may preload it too).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(option, value, 0, 0, 0))


def hide_memory() -> bool:
    """Make this process non-dumpable; whether it now is (False off Linux, where there is no /proc to close)."""
    if not sys.platform.startswith("linux"):
        return False
    return _prctl(_PR_SET_DUMPABLE, 0) == 0


def die_with_parent(signum: int) -> None:
    """Have the kernel send `signum` to this process when the thread that started it ends (Linux)."""
    if sys.platform.startswith("linux"):
        _prctl(_PR_SET_PDEATHSIG, signum)


def dask_setup(server: Any) -> None:
    """Dask's preload hook (`--preload flyte_lab.private_process`): the scheduler or worker starting hides its
    memory."""
    hide_memory()

