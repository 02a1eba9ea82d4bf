"""A local cluster kept for the life of a process: a notebook's kernel under `%flyte_run`.

Starting the local cluster and, above all, its kernel template and pooled kernels is most of what a short run
costs; a kernel that runs `%flyte_run` again pays it once. Each run still gets its own client and driver (its
lease, its cancel), and the pooled kernels still follow each run's secrets (`engine/worker/kernels.py`); pools that
would start kernels unlike the ones a run would get without them are closed first (`kernels.close_unfit`).
Closed at exit (the kernel's shutdown), with the pools.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_kept: _Kept | None = None


class _Kept:
    def __init__(self, n: int) -> None:
        from flyte_lab.engine.clusters import local_cluster

        self.n = n
        self.users = 0
        self._stack = contextlib.ExitStack()
        try:
            self.cluster = self._stack.enter_context(local_cluster(n))
        except BaseException:
            self._stack.close()
            raise

    def alive(self) -> bool:
        from distributed.core import Status

        return bool(self.cluster.status == Status.running)

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def kept_local_cluster(n: int) -> Iterator[Any]:
    """This process's local cluster of `n` workers, started on first use and left running after the block.
    Another size while a run uses the kept one: a cluster of this run's own, closed with the block."""
    global _kept
    with _lock:
        stale = None
        if _kept is not None and (not _kept.alive() or (_kept.n != n and _kept.users == 0)):
            stale, _kept = _kept, None
        if stale is not None:
            stale.close()
        if _kept is None:
            _kept = _Kept(n)
            atexit.unregister(close_kept)
            atexit.register(close_kept)
        kept = _kept if _kept.n == n else None
        if kept is not None:
            kept.users += 1
    if kept is None:
        from flyte_lab.engine.clusters import local_cluster

        with local_cluster(n) as own:
            yield own
        return
    try:
        yield kept.cluster
    finally:
        with _lock:
            kept.users -= 1


def kept_scheduler() -> str | None:
    """The kept cluster's scheduler address, if one runs (tests and benchmarks tell reuse by it)."""
    with _lock:
        return str(_kept.cluster.scheduler_address) if _kept is not None and _kept.alive() else None


def close_kept() -> None:
    """Close the kept cluster and every kernel pool of this process (pooled kernels, templates)."""
    from flyte_lab.engine.worker.kernels import close_pools

    global _kept
    with _lock:
        kept, _kept = _kept, None
    try:
        if kept is not None:
            kept.close()
    finally:
        close_pools()
