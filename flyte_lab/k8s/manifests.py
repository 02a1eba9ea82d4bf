"""The manifests `--cluster k8s` creates: one `DaskCluster` (its default worker group runs the first
profile) and one `DaskWorkerGroup` per other profile, built with dask-kubernetes' own spec builders.

Every group starts at zero replicas (min_workers): flyte_lab's per-profile autoscaler sets each group's
replicas from the tasks waiting for its profile, so a GPU worker exists only while a GPU task needs it.
"""

from __future__ import annotations

import re
from typing import Any

from flyte_lab.errors import UserInputError
from flyte_lab.graph.model import Workflow
from flyte_lab.k8s.config import K8sConfig
from flyte_lab.k8s.profiles import Profile, profiles_of


def require_k8s_extra(what: str) -> None:
    """Refuse `what` in one line (exit 2) when the `k8s` extra (dask-kubernetes, its kubernetes client,
    PyYAML) is not installed: it is optional, so a missing one is the user's setup, not a crash."""
    try:
        import dask_kubernetes.operator  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as err:
        raise UserInputError(f"{what} needs the `k8s` extra, which is not installed ({err.name or err}): "
                             "pip install 'flyte_lab[k8s]'") from None


def cluster_name(wf: Workflow) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", wf.path.rsplit("/", 1)[-1].removesuffix(".ipynb").lower()).strip("-")
    return f"flyte-{stem or 'notebook'}"[:40].rstrip("-")


def _worker_args(profile: Profile) -> list[str]:
    resources = ",".join(f"{k}={v:g}" for k, v in profile.dask_resources().items())
    # one task at a time per worker: each task is a kernel process of its own
    return ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", "1", "--resources", resources,
            "--dashboard", "--dashboard-address", "8788"]


def _pod_settings(pod: dict[str, Any], config: K8sConfig) -> None:
    if config.service_account:
        pod["serviceAccountName"] = config.service_account
    if config.node_selector:
        pod["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod["tolerations"] = [dict(t) for t in config.tolerations]
    if config.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    for container in pod["containers"]:
        if config.env_from_secrets:
            container["envFrom"] = [{"secretRef": {"name": name}} for name in config.env_from_secrets]


def _worker_spec(profile: Profile, config: K8sConfig) -> dict[str, Any]:
    from dask_kubernetes.operator import make_worker_spec

    spec: dict[str, Any] = make_worker_spec(image=profile.image, n_workers=config.min_workers,
                                            resources=profile.container_resources() or None)
    container = spec["spec"]["containers"][0]
    container["args"] = _worker_args(profile)
    container["env"] = [{"name": "FLYTE_LAB_PROFILE", "value": profile.tag}]
    _pod_settings(spec["spec"], config)
    return spec


def build_manifests(wf: Workflow, config: K8sConfig) -> list[dict[str, Any]]:
    from dask_kubernetes.operator import make_cluster_spec

    name = cluster_name(wf)
    profiles = list(profiles_of(wf, config.base_image))
    first, rest = profiles[0], profiles[1:]
    cluster: dict[str, Any] = make_cluster_spec(name, image=config.base_image, n_workers=config.min_workers)
    cluster["metadata"]["namespace"] = config.namespace
    cluster["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "flyte-lab"}
    cluster["spec"]["worker"] = _worker_spec(first, config)
    for container in cluster["spec"]["scheduler"]["spec"]["containers"]:
        container["env"] = []
    _pod_settings(cluster["spec"]["scheduler"]["spec"], config)
    out = [_prune(cluster)]
    for profile in rest:
        out.append(_prune({
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskWorkerGroup",
            "metadata": {"name": f"{name}-{profile.group_name}", "namespace": config.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "flyte-lab"}},
            "spec": {"cluster": name, "worker": _worker_spec(profile, config)},
        }))
    return out


def _prune(value: Any) -> Any:
    """Drop `None` values (dask-kubernetes emits `env: None`, which the CRD schema refuses)."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)
