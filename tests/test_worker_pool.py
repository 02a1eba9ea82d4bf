"""The kernel pool stays bounded however many runs a long-lived process makes, and closes completely.

Real threaded Dask LocalClusters (a new one per "run", as `flyte_lab.engine.clusters.connect` makes) and
real kernel processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from flyte_lab.engine.worker.kernels import FORK, MAX_POOL, close_pools, pool, pooled_kernels, reserve, warm_up

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    close_pools()
    yield
    close_pools()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return value


def kernel_children() -> list[psutil.Process]:
    """Live kernel processes started by this process: spawned (ipykernel_launcher) or forked by a template."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            forked = "kernel_template" in " ".join(child.parent().cmdline())
            if ("ipykernel_launcher" in " ".join(child.cmdline()) or forked) \
                    and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def templates() -> list[psutil.Process]:
    return [c for c in psutil.Process().children() if "kernel_template" in " ".join(c.cmdline())]


PER_WORKER = 2 if FORK else 1  # forked kernels are cheap: a second one per worker hides the next start


def one_run(workers: int) -> None:
    """What a `flyte-lab run` on a local cluster does to the pool: warm every worker of a fresh cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.run(warm_up)


def test_many_runs_never_grow_the_pool_past_its_bound() -> None:
    sizes = []
    for run in range(1, 4):
        one_run(workers=2)
        expected = min(MAX_POOL, PER_WORKER * 2 * run)  # workers of ended clusters still count, up to the bound
        wait_for(lambda expected=expected: pooled_kernels() == expected, 60, f"{expected} pooled kernels")
        sizes.append(len(kernel_children()))
    reserve(10)
    python3 = pool()
    assert python3 is not None
    wait_for(lambda: pooled_kernels() == MAX_POOL, 60, "the pool to settle")
    sizes.append(len(kernel_children()))
    assert sizes == [min(MAX_POOL, 2 * PER_WORKER), 4, 4, 4]
    directory = python3.directory
    close_pools()
    assert kernel_children() == []
    assert templates() == []
    assert not os.path.exists(directory)


def test_closing_after_each_run_keeps_the_pool_at_the_clusters_size() -> None:
    for _ in range(3):
        one_run(workers=2)
        wait_for(lambda: pooled_kernels() == 2 * PER_WORKER, 60, "the pooled kernels of two workers")
        assert len(kernel_children()) == 2 * PER_WORKER
        close_pools()  # what the driver does after a run on a local cluster
        assert kernel_children() == []
        assert templates() == []
