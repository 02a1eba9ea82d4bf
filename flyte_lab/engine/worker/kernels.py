"""How a task gets its kernel: the one replaceable piece of the worker side.

Kernels follow the notebook's kernelspec. Each worker process keeps one small
pool of pre-started kernels per kernelspec (kernel start is ~0.7 s and
dominates short tasks), bounded by the number of local workers and at most
`MAX_POOL` per kernelspec; `close_pools()` ends them all. Pooled kernels are
brand-new processes, used once, so tasks stay isolated.

Secrets: the driver names, in `scrub`, every environment variable that is a
secret of some task; no kernel may see one unless its own task's `--env` sets
it. Each pooled kernel remembers which names were removed from its
environment, and is handed only to a task that scrubs exactly those; a task
with its own `--env` gets a fresh kernel launched with that environment, less
its secrets, which reach it in memory (`engine/worker/secret_kernel.py`): what a
process was started with is readable in /proc by every process of the user.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterable
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import port_names
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type, default

from flyte_lab.engine.worker import attempts, connection_files, kernelspecs, secret_kernel
from flyte_lab.engine.worker.forked_kernels import ForkedProcess, KernelProcess, Template, TemplateError
from flyte_lab.engine.worker.kernelspecs import Launch, is_ipykernel, launch_of, spec_env

POOL_SIZE = int(os.environ.get("FLYTE_LAB_KERNEL_POOL", "1"))
FORK = os.environ.get("FLYTE_LAB_KERNEL_FORK", "1") != "0"  # 0: every kernel is started as a process
MAX_POOL = 4  # ready kernels per kernelspec in one process, however many workers or runs it serves
FORK_WAIT_S = 120.0  # a task waits this long for a fork (its template may be importing the setup modules)
PRELOAD = "--IPKernelApp.exec_lines=import flyte_lab.engine.task_runtime"
# a task kernel runs one notebook once: IPython's history database (a thread writing SQLite, one file shared by
# every kernel of the user) is pure cost there
TASK_KERNEL_ARGS = ["--HistoryManager.enabled=False"]
log = logging.getLogger("flyte_lab.kernels")


# -- environments -----------------------------------------------------------------------------------------------


def kernel_env(base: dict[str, str], scrub: Iterable[str], own: dict[str, str] | None) -> dict[str, str]:
    """`base` without the scrubbed names, then the task's own `--env` (which may set them)."""
    env = {k: v for k, v in base.items() if k not in set(scrub)}
    env.pop("PYDEVD_USE_FRAME_EVAL", None)
    env.update(own or {})
    return env


def removed_names(scrub: Iterable[str]) -> frozenset[str]:
    """The scrubbed names this process actually has: what a kernel's environment lacks."""
    return frozenset(n for n in scrub if n in os.environ)


# -- the pool -----------------------------------------------------------------------------------------------------


class _Pooled:
    def __init__(self, proc: KernelProcess, info: dict[str, Any], conn_file: str, removed: frozenset[str],
                 generation: int) -> None:
        self.proc = proc
        self.info = info
        self.conn_file = conn_file
        self.removed = removed
        self.generation = generation  # which set of setup modules its memory holds (forked kernels)

    @property
    def forked(self) -> bool:
        return isinstance(self.proc, ForkedProcess)


class KernelPool:
    """Keeps `size` kernels of one kernelspec started ahead of need, refilled in a thread.

    Kernels are forked from a template (`engine/worker/forked_kernels.py`) where the kernelspec allows it, else
    started as processes. `want(modules)` names the setup cells' imports: the template imports them once and
    kernels forked before that are replaced, so a task never pays for them again.
    """

    def __init__(self, kernel_name: str, size: int, directory: str, scrub: frozenset[str] = frozenset()) -> None:
        self.kernel_name = kernel_name
        self.size = size
        self.scrub = scrub  # what the last task asked to scrub: new kernels follow it
        self._dir = directory
        self._ready: list[_Pooled] = []
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._filling = True  # the fill thread is still working towards `size` (a take may wait for it)
        self._spec = spec = kernelspecs.kernel_spec(kernel_name)
        self.context = launch_context()  # what its template and kernels inherit from this process
        self.identity = spec_identity(spec)  # the kernelspec this pool follows: another one gets another pool
        plan = launch_of(spec)
        self._plan: Launch | None = plan if isinstance(plan, Launch) else None
        self.refusal: str | None = None  # why this kernelspec's kernels are started as processes, not forked
        self._forkable = FORK
        if FORK and isinstance(plan, str):
            self._refuse(plan)
        self._template: Template | None = None
        self._template_removed: frozenset[str] | None = None
        self._modules: list[str] = []
        self._unsafe: set[str] = set()  # setup modules that made a template unsafe to fork: not preloaded
        self.generation = 0
        self._thread = threading.Thread(target=self._fill, name=f"flyte-lab-kernel-pool-{kernel_name}",
                                        daemon=True)
        self._thread.start()

    @property
    def forking(self) -> bool:
        return self._forkable

    def follow(self, scrub: Iterable[str]) -> None:
        """Start the next kernels without these names (ready ones that lack others are replaced)."""
        with self._lock:
            self.scrub = frozenset(scrub)

    def wanted_modules(self) -> list[str]:
        with self._lock:
            return list(self._modules)

    def want(self, modules: Iterable[str]) -> None:
        """Setup-cell modules the next tasks import: the template preloads them (in the fill thread)."""
        with self._lock:
            new = [m for m in modules if m not in self._modules]
            if not new or not self._forkable:
                return
            self._modules.extend(new)
            self.generation += 1
            self._filling = True
        self._wake.set()

    def _argv(self, spec: Any, conn_file: str) -> list[str]:
        argv = [conn_file if a == "{connection_file}" else a.replace("{resource_dir}", spec.resource_dir)
                for a in spec.argv]
        if argv:
            argv[0] = kernelspecs.interpreter(argv[0])
        return argv

    def _refuse(self, why: str) -> None:
        """From now on this pool starts kernels as processes; `refusal` tells the run why (once, by its driver)."""
        self._forkable = False
        self.refusal = (f"kernelspec `{self.kernel_name}`: each task's kernel is started as a new process, not "
                        f"forked from a template (several times slower per task), because {why}")
        log.info("kernel pool %s", self.refusal)

    def _launch(self) -> _Pooled:
        spec = self._spec
        conn_file, info = connection_files.write(self.kernel_name)  # its own random key
        scrub = self.scrub
        proc: KernelProcess | None = self._fork(spec, conn_file, scrub) if self._forkable else None
        generation = self.generation
        if proc is None:
            argv = self._argv(spec, conn_file)
            if is_ipykernel(argv):
                argv.append(PRELOAD)  # the task runtime is imported while the kernel waits, off the critical path
                argv.extend(TASK_KERNEL_ARGS)
            env = spec_env(dict(os.environ), spec, scrub)
            env["JPY_PARENT_PID"] = str(os.getpid())  # the kernel exits when this worker dies
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        return _Pooled(proc, info, conn_file, removed_names(scrub), generation)

    def _fork(self, spec: Any, conn_file: str, scrub: frozenset[str]) -> ForkedProcess | None:
        """A kernel forked from this kernelspec's template (started or replaced as needed); None: spawn instead."""
        assert self._plan is not None
        try:
            template = self._template_for(spec, scrub)
            return template.fork(conn_file, [*self._plan.kernel_args, *TASK_KERNEL_ARGS])
        except (TemplateError, OSError) as exc:
            self._refuse(f"its kernel template failed ({exc})")
            self._drop_template()
            return None

    def _new_template(self, spec: Any, scrub: frozenset[str]) -> Template:
        """A template run as the kernelspec runs its kernels: its interpreter and options, its environment."""
        assert self._plan is not None
        self._template_removed = removed_names(scrub)
        return Template([self._plan.python, *self._plan.options], spec_env(dict(os.environ), spec, scrub))

    def _template_for(self, spec: Any, scrub: frozenset[str]) -> Template:
        removed = removed_names(scrub)
        if self._template is not None and (self._template_removed != removed or not self._template.alive()):
            self._drop_template(retire=True)  # made for other secrets: kernels it forked may still run tasks
        if self._template is None:
            self._template = self._new_template(spec, scrub)
        while True:
            unsafe = self._template.preload([m for m in self._modules if m not in self._unsafe])
            if unsafe is None:
                return self._template
            self._unsafe.add(unsafe)
            self._drop_template(retire=True)
            self._template = self._new_template(spec, scrub)

    def _drop_template(self, retire: bool = False) -> None:
        template, self._template = self._template, None
        if template is not None:
            if retire:
                template.retire()
            else:
                template.close()

    def _fill(self) -> None:
        while not self._closed:
            with self._lock:
                # replaced: forks made before the setup modules were preloaded, and kernels that died waiting
                # (e.g. a port taken between choosing it and binding it): a dead one would hold its place forever
                removed = removed_names(self.scrub)
                stale = [p for p in self._ready if (p.forked and p.generation != self.generation)
                         or p.proc.poll() is not None or p.removed != removed]
                for pooled in stale:
                    self._ready.remove(pooled)
                missing = self.size - len(self._ready)
            for pooled in stale:
                _kill(pooled)
            for _ in range(max(0, missing)):
                try:
                    pooled = self._launch()
                except Exception as exc:
                    log.warning("kernel pool %s: cannot start kernels ahead of need (%s)", self.kernel_name, exc)
                    with self._lock:
                        self._closed = True
                        self._filling = False
                        self._lock.notify_all()
                    return
                with self._lock:
                    if self._closed:
                        _kill(pooled)
                        return
                    self._ready.append(pooled)
                    self._lock.notify_all()
            with self._lock:
                if self.generation == self._ready_generation():
                    self._filling = False
                    self._lock.notify_all()
            self._wake.wait(timeout=5)
            self._wake.clear()

    def _ready_generation(self) -> int:
        return min((p.generation for p in self._ready), default=self.generation)

    def take(self, scrub: Iterable[str], wait_s: float = 0.0) -> _Pooled | None:
        """A live kernel whose environment lacks exactly the names this task scrubs, if one is ready.

        With `wait_s`, a forking pool that is still filling (e.g. its template importing the setup modules)
        is waited for: a fork is far cheaper than the normal start the caller would otherwise do.
        """
        wanted = removed_names(scrub)
        found = None
        deadline = time.monotonic() + wait_s
        with self._lock:
            if self.scrub != frozenset(scrub):
                self.scrub = frozenset(scrub)
                self._wake.set()
            if not self._ready and self._forkable and not self._closed:
                # a task found nothing ready: tasks come faster than the pool refills, so keep one more ready
                self.size = min(MAX_POOL, self.size + 1)
            while found is None:
                while self._ready and found is None:
                    pooled = self._ready.pop(0)
                    if (pooled.proc.poll() is None and pooled.removed == wanted
                            and (not pooled.forked or pooled.generation == self.generation)):
                        found = pooled
                    else:
                        _kill(pooled)  # dead, started for another set of secrets, or without the setup modules
                left = deadline - time.monotonic()
                if found is not None or left <= 0 or self._closed or not self._forkable:
                    break
                self._wake.set()
                self._lock.wait(timeout=min(left, 0.5))
        self._wake.set()
        return found

    @property
    def directory(self) -> str:
        """The folder of the pooled kernels' connection files (shared by all pools of this process)."""
        return self._dir

    def live(self) -> int:
        with self._lock:
            return sum(1 for p in self._ready if p.proc.poll() is None)

    def close(self, retire: bool = False) -> None:
        """Kill the ready kernels and end the template; `retire`: let the kernels it forked finish their tasks."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            for pooled in self._ready:
                _kill(pooled)
            self._ready.clear()
        self._drop_template(retire)


def spec_identity(spec: Any) -> tuple[Any, ...]:
    """What makes two kernelspecs of one name start different kernels (a `--user` one shadowing the venv's)."""
    return (spec.resource_dir, tuple(spec.argv), tuple(sorted((spec.env or {}).items())))


def launch_context() -> tuple[frozenset[tuple[str, str]], str]:
    """What a template or a kernel started now inherits from this process: its environment and folder."""
    return frozenset(os.environ.items()), os.getcwd()


def _kill(pooled: _Pooled) -> None:
    try:
        os.killpg(pooled.proc.pid, 9)  # its own group: forked kernels `setsid` before the template answers
    except (ProcessLookupError, PermissionError):
        pass
    pooled.proc.wait()
    connection_files.remove(pooled.conn_file)


_pools: dict[str, KernelPool] = {}
_pool_lock = threading.Lock()
_owners: set[str] = set()  # workers served by this process: threaded local clusters put several in one
_reserved = 0


def _pool_size(forking: bool) -> int:
    """One ready kernel per worker of this process; two when they are forks (cheap), so the next task's kernel
    is ready while the current one starts, instead of just after."""
    wanted = max(POOL_SIZE, len(_owners), _reserved)
    return min(MAX_POOL, 2 * wanted if forking else wanted)


def pool(kernel_name: str = "python3", modules: Iterable[str] = (),
         scrub: Iterable[str] | None = None) -> KernelPool | None:
    """The pool of this kernelspec in this process (started on first use), or None when pooling is off.

    `modules`: the setup cells' imports, preloaded where kernels are forked; `scrub`: the run's secret names,
    so the kernels started ahead of its first task already lack them.
    """
    if POOL_SIZE <= 0:
        return None
    identity = spec_identity(kernelspecs.kernel_spec(kernel_name))
    with _pool_lock:
        found = _pools.get(kernel_name)
        if found is not None and found.identity != identity:
            # the kernelspec changed (installed, edited, or a user one now shadows it): its kernels are not ours
            # to hand out; the old template stays until the kernels it forked end their tasks
            threading.Thread(target=found.close, kwargs={"retire": True}, daemon=True,
                             name=f"flyte-lab-kernel-pool-{kernel_name}-closing").start()
            found = None
        if found is None:
            if not _pools:
                atexit.unregister(close_pools)
                atexit.register(close_pools)
            found = _pools[kernel_name] = KernelPool(kernel_name, _pool_size(FORK), connection_files.folder(),
                                                     frozenset(scrub or ()))
        else:
            found.size = max(found.size, _pool_size(found.forking))  # kept if it grew to meet demand
            if scrub is not None:  # a new run (a kept pool): its first kernels already lack its secrets
                found.follow(scrub)
            found._wake.set()
    found.want(modules)
    return found


def fork_refusal(kernel_name: str) -> str | None:
    """Why this process starts kernels of `kernel_name` as processes instead of forking them, if it does."""
    with _pool_lock:
        found = _pools.get(kernel_name)
    return found.refusal if found is not None else None


def pooled_kernels() -> int:
    """Live kernels waiting in this process's pools."""
    with _pool_lock:
        pools = list(_pools.values())
    return sum(p.live() for p in pools)


def close_pools() -> None:
    """Kill every pooled kernel of this process, removing their connection files (and the folder, once no
    task's kernel has one in it)."""
    global _reserved
    with _pool_lock:
        pools = list(_pools.values())
        _pools.clear()
        _owners.clear()
        _reserved = 0
    for found in pools:
        found.close()
    connection_files.release()


def close_unfit(kernel_name: str, modules: Iterable[str]) -> None:
    """Close this kernelspec's pool if a run that has these setup modules would get other kernels from it than
    from a new one: its template was started in another environment or folder (the user changed them in the
    kernel since), or preloads another set of modules. For pools kept from one run to the next."""
    with _pool_lock:
        found = _pools.get(kernel_name)
        if found is None or (found.context == launch_context()
                             and (not found.forking or set(found.wanted_modules()) == set(modules))):
            return
        del _pools[kernel_name]
    found.close(retire=True)  # kernels it forked may still run another run's tasks


def reserve(kernels: int, kernel_name: str = "python3", modules: Iterable[str] = (),
            scrub: Iterable[str] = ()) -> None:
    """Keep this many kernels ready in this process (a threaded local cluster's workers share it)."""
    global _reserved
    with _pool_lock:
        _reserved = kernels
    pool(kernel_name, modules, scrub)


def warm_up(dask_worker: Any = None, kernel_name: str = "python3", modules: Iterable[str] = (),
            scrub: Iterable[str] | None = None) -> None:
    """Start the pool early, one ready kernel per worker of this process (`client.run` passes the worker)."""
    if dask_worker is not None:
        with _pool_lock:
            _owners.add(str(dask_worker.address))
    pool(kernel_name, modules, scrub)


# -- papermill's kernel manager -----------------------------------------------------------------------------------


_zmq_lock = threading.Lock()
_zmq_context: Any = None


def _shared_zmq_context() -> Any:
    """One zmq context for every task's kernel manager and client in this process. jupyter_client makes one
    per manager and one per client, each with an I/O thread started and joined per task; a context of our
    own (not `Context.instance()`, which a hosting kernel may own and terminate) lives as long as the process."""
    global _zmq_context
    with _zmq_lock:
        if _zmq_context is None or _zmq_context.closed:
            import zmq.asyncio

            _zmq_context = zmq.asyncio.Context()
        return _zmq_context


class FastReadyClient(AsyncKernelClient):
    """Ready as soon as the kernel answers kernel_info and IOPub flows.

    jupyter_client then waits for 0.2 s of IOPub silence, a fixed cost per
    task; nbclient ignores stray IOPub messages by parent id, so we only drain
    what is already queued.
    """

    kernel_info_reply: dict[str, Any] | None = None

    @default("context")
    def _shared_context(self) -> Any:
        return _shared_zmq_context()  # not created here, so not destroyed with this client

    def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True,
                       control: bool = True) -> None:
        # no heartbeat thread: a client made by its kernel manager asks the manager whether the kernel lives
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)

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
                    self.kernel_info_reply = msg  # the executed notebook's language_info, without asking again
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
    """A kernel manager that adopts a pre-started kernel when one fits, and reports the kernel to its attempt."""

    @property
    def kernel_spec(self) -> Any:
        if self._kernel_spec is None and self.kernel_name:
            self._kernel_spec = kernelspecs.kernel_spec(self.kernel_name)
        return self._kernel_spec

    client_class = DottedObjectName("flyte_lab.engine.worker.kernels.FastReadyClient")

    @default("context")
    def _shared_context(self) -> Any:
        return _shared_zmq_context()

    @default("connection_file")
    def _private_connection_file(self) -> str:
        # not jupyter_client's default (a `tmp*.json` in the shared temporary folder)
        return connection_files.new_path()

    client_factory = Type(klass=AsyncKernelClient, default_value=FastReadyClient)

    extra_env: dict[str, str] = {}
    scrub: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    attempt_key: str | None = None
    use_pool = True

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        # a task with its own --env gets a kernel started with it: a fork would keep the template's values of
        # whatever its modules read from the environment at import
        source = pool(self.kernel_name, self.modules) if self.use_pool and not self.extra_env else None
        pooled = source.take(self.scrub, wait_s=FORK_WAIT_S if source.forking else 0.0) if source else None
        provisioner: Any = self.provisioner
        if pooled is None:
            if is_ipykernel(kernel_cmd):
                kernel_cmd = [*kernel_cmd, *TASK_KERNEL_ARGS]
            await self._spawn(kernel_cmd, kw)
        else:
            provisioner.process = pooled.proc
            provisioner.pid = pooled.proc.pid
            provisioner.pgid = pooled.proc.pid  # every kernel leads its own group (start_new_session / setsid)
            provisioner.ip = "127.0.0.1"
            provisioner.connection_info = pooled.info
            self.cleanup_connection_file()  # written for a kernel of our own, which the pooled one replaces
            self.connection_file = pooled.conn_file
            for name in port_names:
                setattr(self, name, 0)  # else `load_connection_info` keeps the ports chosen for our own kernel
            self.load_connection_info(pooled.info)  # type: ignore[arg-type]
            self._connection_file_written = True  # so shutting this kernel down removes its file
        attempt = attempts.current(self.attempt_key)
        if attempt is not None:
            try:
                attempt.kernel_started(provisioner.process, provisioner.pid)  # raises if cancelled meanwhile
            except attempts.AttemptStopped:
                self.cleanup_connection_file()  # its kernel is killed and nobody will shut it down
                raise

    async def _spawn(self, kernel_cmd: list[str], kw: dict[str, Any]) -> None:
        """Start a kernel process with this task's `--env`; its secrets (the `--env` names that are scrubbed
        everywhere else) go through `secret_kernel`, in memory, unless the kernelspec cannot take them that way."""
        base = dict(kw.get("env") or os.environ)
        secrets = {k: v for k, v in self.extra_env.items() if k in self.scrub}
        secret_cmd = secret_kernel.command(kernel_cmd) if secrets else None
        if secret_cmd is None:
            if secrets:
                log.warning("kernelspec %s does not start ipykernel with -m: this task's secrets are in its "
                            "kernel's environment", self.kernel_name)
            kw["env"] = kernel_env(base, self.scrub, self.extra_env)
            await super()._async_launch_kernel(kernel_cmd, **kw)
            return
        plain = {k: v for k, v in self.extra_env.items() if k not in secrets}
        channel = secret_kernel.SecretChannel(secrets)
        try:
            kw.update(channel.launch_kw(kernel_env(base, self.scrub, plain)))
            await super()._async_launch_kernel(secret_cmd, **kw)
        except BaseException:
            channel.close()
            raise
        channel.send()

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        """Kill, then wait for the exit itself (a pidfd), not jupyter_client's 0.1 s polls: one less step per task.
        Waited for, forked or not: an attempt returns when its kernel is gone (a cancel's contract)."""
        provisioner: Any = self.provisioner
        proc = getattr(provisioner, "process", None)
        if proc is None:
            await super()._async_kill_kernel(restart=restart)
            return
        await provisioner.kill(restart=restart)  # its process group: whatever the task started goes too
        await _exited(proc.pid, timeout=5.0)
        await provisioner.wait()


async def _exited(pid: int, timeout: float) -> None:
    """Returns once process `pid` has ended (zombies count), or after `timeout`."""
    import asyncio

    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return  # already gone and reaped
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(ended, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def kernel_manager_for(env: dict[str, str] | None, *, attempt_key: str | None = None,
                       scrub: Iterable[str] = (), modules: Iterable[str] = ()) -> type[TaskKernelManager]:
    """The manager class papermill instantiates for one attempt (papermill takes a class, not an instance)."""
    return type("AttemptKernelManager", (TaskKernelManager,),
                {"extra_env": dict(env or {}), "attempt_key": attempt_key, "scrub": tuple(scrub),
                 "modules": tuple(modules)})
