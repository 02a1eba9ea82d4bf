"""How a map-over task's elements are grouped: consecutive elements per kernel.

A fresh kernel per element costs ~120 ms of CPU (its start, papermill, Dask's bookkeeping), which caps a map
near 15 elements/s on 2 cores whatever the elements do. A batch pays that once for several elements, each run in
a fresh namespace (`task_runtime.load_element`). On a local cluster (`local`, `shared`: the machine's cores are
the limit) a map with more than `PER_SLOT` elements per worker slot is cut into batches of at most `MAX_BATCH`,
at least `PER_SLOT` batches per slot so the slots stay evenly busy. On `tcp://` and `k8s` elements are not
batched unless asked (`--batch N`): workers there scale with the tasks queued, and a batch is one task.
"""

from __future__ import annotations

import math

PER_SLOT = 4
MAX_BATCH = 32


def batch_size(elements: int, slots: int | None, asked: int | None) -> int:
    """Elements per kernel: `--batch N` when given, else the local rule above (`slots`: the local cluster's
    worker slots; None for any other cluster)."""
    if asked is not None:
        return max(1, asked)
    if not slots or elements <= PER_SLOT * slots:
        return 1
    return min(MAX_BATCH, math.ceil(elements / (PER_SLOT * slots)))


def batches(elements: int, size: int) -> list[list[int]]:
    """The element indexes of each batch, consecutive, in order; each batch `size` long but the last."""
    return [list(range(start, min(start + size, elements))) for start in range(0, elements, max(1, size))]
