"""What an attempt's kernel uses, sampled while it runs: peak memory (RSS of the kernel and its children) and
CPU seconds, and its memory limit (`--mem`) enforced.

One sampler thread per attempt reads the kernel's process tree through psutil every `SAMPLE_S` (a few /proc reads:
cheap next to a kernel). Memory is the sum of the tree's RSS, so a task that forks workers is counted whole. A
kernel over its task's `--mem` is stopped by the attempt (`Attempt.stop("oom")`), which kills it as a timeout
does; the attempt ends `TaskOutOfMemory` with the peak and the limit. CPU seconds of children that already exited
are not seen (psutil reads live processes): the number is a floor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SAMPLE_S = 0.5


@dataclass
class Usage:
    peak_rss_bytes: int = 0
    cpu_s: float = 0.0

    def as_json(self) -> dict[str, float]:
        return {"peak_rss_bytes": self.peak_rss_bytes, "cpu_s": round(self.cpu_s, 3)}


class UsageSampler:
    """Samples the process tree of `pid` until `stop()`; calls `over_limit(peak)` once when RSS passes
    `limit_bytes`."""

    def __init__(self, pid: int, limit_bytes: float | None, over_limit: Callable[[int], None],
                 every_s: float = SAMPLE_S) -> None:
        self.usage = Usage()
        self._pid, self._limit, self._over, self._every = pid, limit_bytes, over_limit, every_s
        self._cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"flyte-lab-usage-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self._pid)
        except psutil.Error:
            return
        while True:
            self.sample(root)
            if self._stopped.wait(self._every):
                return

    def sample(self, root: Any) -> None:
        with self._lock:  # the thread's samples and `stop`'s last one
            self._sample(root)

    def _sample(self, root: Any) -> None:
        import psutil

        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return  # the kernel is gone
        rss = 0
        for proc in tree:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        usage = self.usage
        usage.cpu_s = max(usage.cpu_s, sum(self._cpu.values()))
        if rss > usage.peak_rss_bytes:
            usage.peak_rss_bytes = rss
        if self._limit is not None and rss > self._limit:
            self._limit = None  # said once
            self._over(rss)

    def stop(self) -> Usage:
        """Stop sampling (one last sample first, while the kernel may still be there) and return the usage."""
        import psutil

        if not self._stopped.is_set():
            try:
                self.sample(psutil.Process(self._pid))
            except psutil.Error:
                pass
        self._stopped.set()
        self._thread.join(timeout=5)
        return self.usage
