"""`--cluster k8s`: a dask-kubernetes `KubeCluster` made from the notebook's manifests, one worker group per
resource profile, each scaled by flyte_lab's `ProfileAutoscaler` between the configured bounds.

The manifests are exactly what `flyte-lab k8s-spec` prints (`manifests.build_manifests`), with a suffix on the
cluster name so two runs of one notebook get two clusters. Each task asks for its profile's Dask resource
(`Profile.dask_resources`), which only that profile's workers advertise. Credentials are checked before a
run is recorded (`credentials_problem`); every failure to reach the API server is one line.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flyte_lab.errors import UserInputError
from flyte_lab.graph.model import Workflow
from flyte_lab.k8s.pod_deaths import why_lost

if TYPE_CHECKING:
    from flyte_lab.k8s.autoscaler import OnScale

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def credentials_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why kr8s would find no Kubernetes credentials here (None if it has some to try): the places it looks,
    in its order: $KUBECONFIG, ~/.kube/config, a pod's service account."""
    env = dict(os.environ if environ is None else environ)
    kubeconfig = env.get("KUBECONFIG")
    if kubeconfig:
        missing = [p for p in kubeconfig.split(os.pathsep) if p and not Path(p).expanduser().is_file()]
        if missing:
            return f"KUBECONFIG names {missing[0]}, which does not exist"
        return None
    home = Path(env.get("HOME") or Path.home())
    if (home / ".kube" / "config").is_file():
        return None
    if env.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_TOKEN.is_file():
        return None
    return (f"no Kubernetes credentials: KUBECONFIG is not set, {home / '.kube' / 'config'} does not exist and "
            "this is not a pod with a service account; set KUBECONFIG to your cluster's kubeconfig")


def check_ready() -> None:
    """Refuse `--cluster k8s` in one line (exit 2), before anything is recorded, when it cannot work here."""
    from flyte_lab.k8s.manifests import require_k8s_extra

    require_k8s_extra("--cluster k8s")
    why = credentials_problem()
    if why:
        raise UserInputError(f"--cluster k8s: {why}")


def unique_manifests(manifests: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """The same manifests under a cluster name of their own (at most 40 characters, as `cluster_name`)."""
    cluster, groups = manifests[0], manifests[1:]
    old = cluster["metadata"]["name"]
    new = f"{old[: 39 - len(suffix)].rstrip('-')}-{suffix}"
    cluster = {**cluster, "metadata": {**cluster["metadata"], "name": new}}
    renamed = []
    for group in groups:
        name = group["metadata"]["name"]
        renamed.append({**group, "metadata": {**group["metadata"], "name": new + name.removeprefix(old)},
                        "spec": {**group["spec"], "cluster": new}})
    return [cluster, *renamed]


def routing(wf: Workflow, base_image: str) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """Each task's Dask resources (its profile's) and what each worker group offers."""
    from flyte_lab.k8s.profiles import profiles_of

    groups = profiles_of(wf, base_image)
    per_task = {task: profile.dask_resources() for profile, tasks in groups.items() for task in tasks}
    return per_task, [profile.dask_resources() for profile in groups]


POLL_S = 1.0  # how often the autoscaler reads the scheduler's demand


@contextlib.contextmanager
def kube_client(wf: Workflow, cluster_factory: Any = None, on_scale: OnScale | None = None) -> Iterator[Any]:
    """A `distributed.Client` on a new KubeCluster for `wf`; the cluster is deleted when the block ends.
    `on_scale` hears every scale decision of its worker groups (the run store records them).

    `cluster_factory` (default `dask_kubernetes.operator.KubeCluster`) is called with `custom_cluster_spec`,
    `namespace`, `shutdown_on_close` and `quiet`, and must offer `add_worker_group(name, custom_spec=...)`,
    `scale(n, worker_group=...)` and `close()`.
    """
    from distributed import Client

    from flyte_lab.k8s.autoscaler import Bounds, KubeGroups, ProfileAutoscaler
    from flyte_lab.k8s.config import load_config
    from flyte_lab.k8s.manifests import build_manifests
    from flyte_lab.k8s.profiles import profiles_of

    if cluster_factory is None:
        check_ready()
        from dask_kubernetes.operator import KubeCluster

        cluster_factory = KubeCluster
    config = load_config()
    manifests = unique_manifests(build_manifests(wf, config), secrets.token_hex(3))
    profiles = list(profiles_of(wf, config.base_image))
    try:
        cluster = cluster_factory(custom_cluster_spec=manifests[0], namespace=config.namespace,
                                  shutdown_on_close=True, quiet=True)
    except Exception as err:  # kr8s / the API server: one line, with what it said
        _forget_half_made(cluster_factory, manifests[0]["metadata"]["name"])
        raise UserInputError(f"--cluster k8s: cannot create the Dask cluster in namespace {config.namespace} "
                             f"({_first_line(err)})") from None
    try:
        names = {profiles[0].tag: "default"}
        cluster_name = manifests[0]["metadata"]["name"]
        for profile, group in zip(profiles[1:], manifests[1:], strict=True):
            name = group["metadata"]["name"].removeprefix(cluster_name + "-")
            cluster.add_worker_group(name, custom_spec=group["spec"]["worker"])
            names[profile.tag] = name
        with Client(cluster) as client:
            per_task, offers = routing(wf, config.base_image)
            client.flyte_lab_task_resources = per_task
            client.flyte_lab_offers = offers  # the groups at 0 replicas still count as places for a task
            # a lost worker's pod may say OOMKilled: the driver reports the attempt as out of memory
            client.flyte_lab_why_lost = functools.partial(why_lost, namespace=config.namespace)
            bounds = {p.tag: Bounds(config.min_workers, config.max_workers) for p in profiles}
            scaler = ProfileAutoscaler(client, KubeGroups(cluster, names), bounds, interval_s=POLL_S,
                                       down_after=max(1, math.ceil(config.idle_timeout_s / POLL_S)),
                                       labels={p.tag: p.group_name for p in profiles}, on_scale=on_scale)
            scaler.start()
            try:
                yield client
            finally:
                scaler.stop()
    finally:
        with contextlib.suppress(Exception):  # the operator deletes what is left with the DaskCluster
            cluster.close()


def _forget_half_made(cluster_factory: Any, name: str) -> None:
    # A KubeCluster whose start failed stays registered, and dask-kubernetes' atexit reaper would then try
    # to delete it from the unreachable API server and print a traceback after our one line.
    instances = getattr(cluster_factory, "_instances", None)
    if instances is None:
        return
    for half in [c for c in instances if getattr(c, "name", None) == name]:
        instances.discard(half)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__
