"""Why a `--cluster k8s` worker was lost, read from its pods as the Kubernetes API returns them (issue 20: an
OOMKilled pod is reported `TaskOutOfMemory`). No Kubernetes API server runs here: these are the pod objects'
shapes (core/v1 Pod, `status.containerStatuses[].state|lastState.terminated.reason`), and no API server is no
answer."""

from __future__ import annotations

from typing import Any

from flyte_lab.k8s.pod_deaths import OOM_KILLED, termination_reason, why_lost, worker_death


def pod(name: str, state: dict[str, Any] | None = None, last: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"name": "worker", "ready": False, "restartCount": 1 if last else 0, "image": "img", "imageID": "",
              "state": state or {"running": {"startedAt": "2026-12-03T18:00:00Z"}}, "lastState": last or {}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "labels": {"dask.org/component": "worker"}},
            "spec": {"containers": [{"name": "worker", "image": "img"}]},
            "status": {"phase": "Running", "containerStatuses": [status]}}


OOM = {"terminated": {"exitCode": 137, "reason": OOM_KILLED, "startedAt": "2026-12-03T17:59:00Z",
                      "finishedAt": "2026-12-03T18:00:00Z"}}


def test_a_restarted_container_tells_it_was_oomkilled() -> None:
    assert termination_reason(pod("g-worker-abc-5d9f-x2x", last=OOM)) == OOM_KILLED
    assert termination_reason(pod("g-worker-abc-5d9f-x2x", state=OOM)) == OOM_KILLED  # not restarted (yet)
    assert termination_reason(pod("g-worker-abc-5d9f-x2x")) is None
    error = {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert termination_reason(pod("p", last=error)) == "Error"


def test_the_worker_deployments_pods_are_found_by_name_and_no_other() -> None:
    pods = [pod("grp-worker-aaa-77c-q1", last=OOM), pod("grp-worker-bbb-88d-q2")]
    assert worker_death("grp-worker-aaa", pods) == OOM_KILLED
    assert worker_death("grp-worker-bbb", pods) is None
    assert worker_death("grp-worker-a", pods) is None  # a prefix of another worker's name is not it


def test_no_api_server_is_no_answer(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert why_lost("grp-worker-aaa", "ns") is None
    assert why_lost(None, "ns") is None
