"""How a task gets its kernel: the one replaceable piece of the worker side.

`kernel_manager_for(env)` returns the `KernelManager` class papermill uses
for one task. Kernels come from a per-worker-process pool of pre-started
kernel processes when the task needs no private environment (kernel start
is ~0.7 s and dominates short tasks); a task with `--env` secrets gets a
fresh kernel launched with that environment. Pooled kernels are brand-new
processes, used once and shut down, so tasks stay isolated.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

POOL_SIZE = int(os.environ.get("FLYTE_LAB_KERNEL_POOL", "1"))


class _Pooled:
    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any], conn_file: str) -> None:
        self.proc = proc
        self.info = info
        self.conn_file = conn_file


class KernelPool:
    """Keeps `size` python3 kernel processes started ahead of need, refilled in a thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ready: list[_Pooled] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dir = tempfile.mkdtemp(prefix="flyte-lab-kernels-")
        os.chmod(self._dir, 0o700)  # connection files hold the kernels' HMAC keys
        self._closed = False
        self._thread = threading.Thread(target=self._fill, name="flyte-lab-kernel-pool", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _launch(self) -> _Pooled:
        conn_file = os.path.join(self._dir, f"kernel-{os.urandom(6).hex()}.json")
        _, written = write_connection_file(conn_file, ip="127.0.0.1")
        env = dict(os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # the kernel exits when this worker dies
        env.pop("PYDEVD_USE_FRAME_EVAL", None)
        proc = subprocess.Popen(
            # the task runtime is imported while the kernel waits in the pool, off the task's critical path
            [sys.executable, "-m", "ipykernel_launcher", "-f", conn_file,
             "--IPKernelApp.exec_lines=import flyte_lab.engine.task_runtime"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        info: dict[str, Any] = dict(written)
        # jupyter_client compares connection info with the key as bytes
        info["key"] = info["key"].encode() if isinstance(info["key"], str) else info["key"]
        return _Pooled(proc, info, conn_file)

    def _fill(self) -> None:
        while not self._closed:
            with self._lock:
                missing = self.size - len(self._ready)
            for _ in range(max(0, missing)):
                pooled = self._launch()
                with self._lock:
                    if self._closed:
                        _kill(pooled)
                        return
                    self._ready.append(pooled)
            self._wake.wait(timeout=5)
            self._wake.clear()

    def take(self) -> _Pooled | None:
        with self._lock:
            while self._ready:
                pooled = self._ready.pop(0)
                if pooled.proc.poll() is None:
                    self._wake.set()
                    return pooled
                _kill(pooled)
        self._wake.set()
        return None

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        with self._lock:
            for pooled in self._ready:
                _kill(pooled)
            self._ready.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


def _kill(pooled: _Pooled) -> None:
    try:
        os.killpg(pooled.proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    pooled.proc.wait()
    try:
        os.unlink(pooled.conn_file)
    except FileNotFoundError:
        pass


_pool: KernelPool | None = None
_pool_lock = threading.Lock()
_owners: set[str] = set()  # workers served by this process: threaded local clusters put several in one


def pool() -> KernelPool | None:
    global _pool
    if POOL_SIZE <= 0:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = KernelPool(max(POOL_SIZE, len(_owners)))
        else:
            _pool.size = max(_pool.size, POOL_SIZE, len(_owners))
        return _pool


class FastReadyClient(AsyncKernelClient):
    """Ready as soon as the kernel answers kernel_info and IOPub flows.

    jupyter_client then waits for 0.2 s of IOPub silence, a fixed cost per
    task; nbclient ignores stray IOPub messages by parent id, so we only drain
    what is already queued.
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                msg = None
            if msg is not None and msg["msg_type"] == "kernel_info_reply":
                try:
                    # short: a SUB socket that just connected misses the first messages (slow joiner); ask again
                    await self.iopub_channel.get_msg(timeout=0.02)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(msg)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=0.001)
            except Empty:
                return


class TaskKernelManager(AsyncKernelManager):
    """A kernel manager that adopts a pre-started kernel when one is ready."""

    client_class = DottedObjectName("flyte_lab.engine.kernels.FastReadyClient")
    client_factory = Type(klass=AsyncKernelClient, default_value=FastReadyClient)

    extra_env: dict[str, str] = {}
    use_pool = True

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        source = pool() if self.use_pool and not self.extra_env else None
        pooled = source.take() if source else None
        if pooled is None:
            if self.extra_env:
                env = dict(kw.get("env") or os.environ)
                env.update(self.extra_env)
                kw["env"] = env
            await super()._async_launch_kernel(kernel_cmd, **kw)
            return
        provisioner: Any = self.provisioner
        provisioner.process = pooled.proc
        provisioner.pid = pooled.proc.pid
        provisioner.pgid = os.getpgid(pooled.proc.pid)
        provisioner.ip = "127.0.0.1"
        provisioner.connection_info = pooled.info
        self._reconcile_connection_info(pooled.info)  # type: ignore[arg-type]
        # the pooled file stays until the pool closes: a kernel still starting may not have read it yet


def kernel_manager_for(env: dict[str, str] | None) -> type[TaskKernelManager]:
    if not env:
        return TaskKernelManager
    return type("TaskKernelManagerWithEnv", (TaskKernelManager,), {"extra_env": dict(env)})


def reserve(kernels: int) -> None:
    """Keep at least this many kernels ready in this process (a threaded local cluster's workers share it)."""
    with _pool_lock:
        _owners.update(f"reserved-{i}" for i in range(kernels))
    pool()


def warm_up(dask_worker: Any = None) -> None:
    """Start the pool early, one ready kernel per worker of this process (`client.run` passes the worker)."""
    if dask_worker is not None:
        with _pool_lock:
            _owners.add(str(dask_worker.address))
    pool()
