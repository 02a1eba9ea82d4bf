"""Where tasks run: a local adaptive Dask cluster, any Dask scheduler at tcp://HOST:PORT, or a dask-kubernetes
cluster with one worker group per resource profile (`k8s`, built in `flyte_lab.k8s.kube_cluster`)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flyte_lab.errors import UserInputError

if TYPE_CHECKING:
    from flyte_lab.graph.model import Workflow


def machine_resources(workers: int = 1) -> dict[str, float]:
    """What each of `workers` local workers offers: the machine's CPUs and memory, shared out evenly."""
    import psutil

    share = max(1, workers)
    return {"CPU": float(os.cpu_count() or 1) / share, "MEMORY": float(psutil.virtual_memory().total) / share}


def local_workers(workers: int | None) -> int:
    return max(1, workers or min(os.cpu_count() or 1, 4))


def keep_busy_workers() -> Any:
    """A scheduler plugin: adaptive scale-down never retires a worker that is running a task. Dask picks one
    when its target asks for fewer workers than are busy, and a retired worker's running task is run again
    elsewhere: a second attempt of a task nothing failed (a suite run caught it)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class KeepBusyWorkers(SchedulerPlugin):  # type: ignore[misc]
        name = "flyte-lab-keep-busy-workers"

        def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
            return [ws for ws in workers if not ws.processing]

    return KeepBusyWorkers()


@contextlib.contextmanager
def local_cluster(n: int, security: Any = None) -> Iterator[Any]:
    """The local cluster of `n` workers, open as long as the block. With `security` (the shared executor's),
    it listens on tls://127.0.0.1 for drivers in other processes; else nothing listens (inproc)."""
    import dask
    from distributed import LocalCluster

    # threads, not processes: task code runs in its own kernel process, the worker only drives papermill,
    # and in-process workers start in ~0.2 s instead of ~1.5 s
    # no Dask dashboard (its port was random and never shown; `flyte-lab dashboard` is the UI, and bokeh's
    # import costs ~1 CPU-s) and no statistical profiler sampling the worker threads every 10 ms. The
    # scheduler's and workers' HTTP servers (/metrics) start regardless: on 127.0.0.1 and a free port, never
    # 0.0.0.0:8787 nor every interface
    listen: dict[str, Any] = {} if security is None else {"protocol": "tls://", "host": "127.0.0.1",
                                                          "security": security}
    # no memory manager either (`memory_limit=0`): the workers are threads of one process whose memory is the
    # process's, not theirs, and a task's memory is its kernel's (`attempts`' sampler enforces --mem); its 100 ms
    # polling, and the system monitor's every 500 ms, were most of what an idle shared executor spent
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": "5s"}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=False,  # inproc: nothing listens
                         memory_limit=0,
                         dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}, **listen,
                         worker_class="flyte_lab.engine.worker.local_worker.LoopbackWorker",
                         resources=machine_resources(n), silence_logs=logging.ERROR) as local:
        local.scheduler.add_plugin(keep_busy_workers())
        # short target/interval: the default 5 s target never scales short tasks past one worker
        local.adapt(minimum=1, maximum=n, interval="200ms", target_duration="1s", wait_count=20)
        yield local


@contextlib.contextmanager
def connect(cluster: str, workers: int | None = None, kernel_name: str = "python3",
            wf: Workflow | None = None, on_scale: Callable[[Any], None] | None = None,
            keep: bool = False) -> Iterator[Any]:
    """A connected `distributed.Client`; a local or k8s cluster lives exactly as long as the block, unless
    `keep` (a local one): then it is this process's kept cluster (`kept_cluster`), left running for the next
    run. `k8s` needs the workflow: its worker groups are the tasks' resource profiles; `on_scale` hears each of
    their scale events (`k8s.autoscaler.ScaleEvent`)."""
    from distributed import Client

    from flyte_lab.library_logs import after_dask_import

    after_dask_import()  # the CLI reports a lost cluster in one line: Dask's own records would bury it
    if cluster == "shared":
        from flyte_lab.engine.api import flyte_home
        from flyte_lab.engine.shared_executor import executor_client

        n = local_workers(workers)
        with executor_client(flyte_home(), n) as client:
            client.flyte_lab_offers = [machine_resources(n)]
            client.flyte_lab_slots = n  # map-over elements are batched to keep these busy (`element_batches`)
            _warm(client, kernel_name, wf)
            yield client
        return
    if cluster == "local":
        from flyte_lab.engine.kept_cluster import kept_local_cluster

        n = local_workers(workers)
        # each run its own client (its event subscription, its attributes), never the process's default one:
        # the user's own Dask code in a kernel must not land on a kept cluster
        with (kept_local_cluster(n) if keep else local_cluster(n)) as local, \
                Client(local, set_as_default=False) as client:
            # adapt() adds and removes workers, all alike: judge placement by their configuration
            client.flyte_lab_offers = [machine_resources(n)]
            client.flyte_lab_slots = n
            _warm(client, kernel_name, wf)
            yield client
        return
    if cluster.startswith("tcp://"):
        try:
            client = Client(cluster, timeout=10)
        except OSError as exc:
            raise UserInputError(f"--cluster {cluster}: cannot reach a Dask scheduler there ({exc})") from None
        with client:
            _warm(client, kernel_name, wf)
            yield client
        return
    if cluster == "k8s":
        if wf is None:
            raise UserInputError("--cluster k8s: the workflow is needed to build its worker groups")
        from flyte_lab.k8s.kube_cluster import kube_client

        with kube_client(wf, on_scale=on_scale) as client:
            yield client
        return
    raise UserInputError(f"--cluster {cluster}: expected shared, local, tcp://HOST:PORT or k8s")


def _warm(client: Any, kernel_name: str, wf: Workflow | None) -> None:
    """Start each worker's kernel pool (for the notebook's kernelspec, with its setup imports preloaded where
    kernels are forked) now, while the driver plans the run."""
    from flyte_lab.engine.attempt_spec import setup_modules
    from flyte_lab.engine.worker.kernels import warm_up

    try:
        # returns at once: the pool fills in a background thread
        client.run(warm_up, kernel_name=kernel_name, modules=setup_modules(wf) if wf is not None else [])
    except Exception:  # noqa: S110 - an optimisation only; tasks start kernels themselves otherwise
        pass


def task_resources(client: Any, wf: Workflow, task: str) -> dict[str, float]:
    """What a task asks Dask for: its profile's resource on a k8s cluster (set by `kube_client`), else its
    --cpu/--mem/--gpu."""
    routed = getattr(client, "flyte_lab_task_resources", None)
    if routed is not None and task in routed:
        return dict(routed[task])
    return dask_resources(wf.tasks[task].options.resources())


def dask_resources(resources: dict[str, Any]) -> dict[str, float]:
    from flyte_lab.graph.header import memory_bytes

    out: dict[str, float] = {}
    if "cpu" in resources:
        out["CPU"] = float(resources["cpu"])
    if "mem" in resources:
        out["MEMORY"] = memory_bytes(str(resources["mem"]))
    if resources.get("gpu"):
        out["GPU"] = float(resources["gpu"])
    return out


def unplaceable(client: Any, wanted: dict[str, float]) -> str | None:
    """Why no worker can take a task with these resources (Dask would wait forever, silently)."""
    if not wanted:
        return None
    offers = getattr(client, "flyte_lab_offers", None)
    local = offers is not None
    if offers is None:
        offers = worker_resources(client)
        if not offers:
            return None  # no workers yet: tasks wait for them, as Dask does
    if any(all(offer.get(k, 0) >= v for k, v in wanted.items()) for offer in offers):
        return None
    best = "; ".join(sorted({", ".join(f"{k}={v:g}" for k, v in sorted(offer.items())) or "no resources"
                             for offer in offers}))
    asks = ", ".join(f"{k}={v:g}" for k, v in wanted.items())
    hint = " (the local cluster shares the machine among its workers: fewer --workers give each more)" if local else ""
    return f"asks for {asks} but no worker offers that much (workers offer {best}){hint}"


def worker_resources(client: Any) -> list[dict[str, float]]:
    """Each worker's Dask resources, fresh from the scheduler (`identity`, a plain RPC): unlike
    `run_on_scheduler`, nothing is pickled, so the scheduler needs no flyte_lab installed."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return [{k: float(v) for k, v in (info.get("resources") or {}).items()} for info in workers.values()]


def check_artifact_access(artifacts_root_url: str) -> None:
    """Refuse a run whose artifacts could not be written: a root this process cannot write to (no
    credentials, no bucket, a read-only folder or mount). One probe write."""
    from flyte_lab.engine.artifacts import root_problem

    problem = root_problem(artifacts_root_url)
    if problem:
        where = "FLYTE_LAB_ARTIFACTS=" if os.environ.get("FLYTE_LAB_ARTIFACTS") else "the artifact folder "
        raise UserInputError(f"{where}{artifacts_root_url}: {problem}")


def check_artifact_root(cluster: str, artifacts_root_url: str, shared_fs: bool) -> None:
    """Refuse a cluster of other machines (tcp://, k8s) whose workers could not reach the artifact store (a
    local path), unless `--shared-fs` says they mount it too. No I/O."""
    from fsspec.utils import get_protocol

    if cluster in ("shared", "local") or shared_fs or get_protocol(artifacts_root_url) not in ("file", "local"):
        return
    raise UserInputError(
        f"--cluster {cluster}: artifacts live in {artifacts_root_url}, a path on this machine that the workers "
        "may not share; set FLYTE_LAB_ARTIFACTS to a location the workers share (e.g. s3://bucket/prefix), "
        "or pass --shared-fs if this path is on a disk every worker mounts")
