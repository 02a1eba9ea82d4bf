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


def test_a_hung_api_server_is_no_answer_within_the_time_allowed(monkeypatch: Any, tmp_path: Any) -> None:
    """The driver asks from its loop (lease renewals, cancels): an API server that accepts and never answers (a
    real socket here) must not hold it longer than the time allowed."""
    import socket
    import time

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    port = hung.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: hung\n"
        f"clusters:\n- name: hung\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "contexts:\n- name: hung\n  context:\n    cluster: hung\n    user: hung\n    namespace: ns\n"
        "users:\n- name: hung\n  user:\n    token: abc\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    try:
        started = time.monotonic()
        assert why_lost("grp-worker-aaa", "ns", timeout_s=1.0) is None
        assert time.monotonic() - started < 3.0
    finally:
        hung.close()
