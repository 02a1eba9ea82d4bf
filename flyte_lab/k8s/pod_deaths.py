"""Why a `--cluster k8s` worker was lost: its pod's container ended `OOMKilled` (the pod's memory limit is its
profile's `--mem`), so the lost attempt is reported `TaskOutOfMemory`, as a kernel over `--mem` is elsewhere.

The driver asks once per lost worker (`client.flyte_lab_why_lost(worker_name)`, set by `kube_client`). A
dask-kubernetes worker is a Deployment named as the Dask worker (`DASK_WORKER_NAME`); its pods are named after it,
and a container the kubelet restarted keeps why its previous run ended in `lastState.terminated.reason`.
Any failure to ask is no answer: the attempt stays a lost worker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

OOM_KILLED = "OOMKilled"
ASK_TIMEOUT_S = 5.0


def termination_reason(pod: Mapping[str, Any]) -> str | None:
    """Why a container of `pod` (the API's JSON) last ended, if one did: its current state first, else the run
    the kubelet restarted it after."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if terminated.get("reason"):
                return str(terminated["reason"])
    return None


def worker_death(worker_name: str, pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The termination reason of the pods of the worker Deployment `worker_name` (`NAME-<replicaset>-<pod>`)."""
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name") or "")
        if name.startswith(worker_name + "-"):
            reason = termination_reason(pod)
            if reason:
                return reason
    return None


def why_lost(worker_name: str | None, namespace: str, timeout_s: float = ASK_TIMEOUT_S) -> str | None:
    """Ask the API server why the worker `worker_name` died (None: not known, or not answered in `timeout_s`).

    Asked from the driver's loop, which renews the run's lease and hears cancels: a slow or hung API server
    (kr8s waits without limit) must not hold it, so the question runs in a thread of its own, abandoned if late."""
    if not worker_name:
        return None
    answer: list[str | None] = []

    def ask() -> None:
        with contextlib.suppress(Exception):  # no API server, no rights, a pod already gone: not known
            import kr8s

            pods = kr8s.get("pods", namespace=namespace, label_selector={"dask.org/component": "worker"}, raw=True)
            answer.append(worker_death(worker_name, pods))

    asking = threading.Thread(target=ask, name="flyte-lab-why-lost", daemon=True)
    asking.start()
    asking.join(timeout_s)
    return answer[0] if answer else None
