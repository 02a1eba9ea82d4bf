"""`--cluster k8s` without a live Kubernetes cluster (none can run here): what can be proved offline.

- Refusals are one line with exit 2: no credentials at all, a KUBECONFIG naming a missing file (both before
  anything is recorded), an API server that does not answer (the real `KubeCluster` and kr8s try it).
- Not proved here: creating worker groups and scaling them through the operator (no API server can run
  on this machine); see README "Scaling out".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from flyte_lab.k8s.kube_cluster import credentials_problem, unique_manifests
from tests.conftest import CLI, cli_env
from tests.process_helpers import free_port, write_notebook

NOTEBOOK_TASKS = (
    "%%flyte_task make(n: int) -> numbers: list[int]\nnumbers = list(range(n))",
    "%%flyte_task heavy(numbers: list[int]) -> total: int --cpu 2 --mem 1Gi\ntotal = sum(numbers)",
    "%%flyte_task gpu(total: int) -> doubled: int --gpu 1\ndoubled = 2 * total",
)


def _no_kube_env(home: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in cli_env(home).items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path / "user")  # no ~/.kube/config
    return env


def _one_line_refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_without_credentials_k8s_is_refused_in_one_line_before_anything_is_recorded(home: Path,
                                                                                    tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "k8s.ipynb", "n = 3", *NOTEBOOK_TASKS)
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "k8s"], env=_no_kube_env(home, tmp_path),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    line = _one_line_refusal(done)
    assert line.startswith("flyte-lab: error: --cluster k8s: no Kubernetes credentials: KUBECONFIG is not set, ")
    assert "~" not in line and ".kube/config does not exist" in line and "set KUBECONFIG" in line
    assert not (home / "store.db").exists()


def test_a_kubeconfig_naming_a_missing_file_is_named(home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "k8s.ipynb", "n = 3", *NOTEBOOK_TASKS)
    env = {**_no_kube_env(home, tmp_path), "KUBECONFIG": str(tmp_path / "nope.yaml")}
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "k8s"], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert _one_line_refusal(done) == (f"flyte-lab: error: --cluster k8s: KUBECONFIG names {tmp_path}/nope.yaml, "
                                       "which does not exist")
    assert not (home / "store.db").exists()


def test_credentials_are_looked_for_where_kr8s_looks(tmp_path: Path) -> None:
    assert credentials_problem({"HOME": str(tmp_path)}) is not None
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    assert credentials_problem({"HOME": str(tmp_path)}) is None
    assert credentials_problem({"HOME": "/nonexistent", "KUBECONFIG": str(tmp_path / ".kube" / "config")}) is None


def test_an_api_server_that_does_not_answer_is_one_line(home: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: nowhere\n  cluster: {{server: 'https://127.0.0.1:{free_port()}'}}\n"
        "contexts:\n- name: nowhere\n  context: {cluster: nowhere, user: nobody, namespace: default}\n"
        "current-context: nowhere\nusers:\n- name: nobody\n  user: {token: not-a-token}\n")
    nb = write_notebook(tmp_path / "k8s.ipynb", "n = 3", *NOTEBOOK_TASKS)
    env = {**_no_kube_env(home, tmp_path), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "k8s", "--shared-fs"], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    line = _one_line_refusal(done)
    assert line.startswith("flyte-lab: error: --cluster k8s: cannot create the Dask cluster in namespace default ("), (
        line)


def test_each_run_gets_a_cluster_name_of_its_own() -> None:
    manifests = [{"metadata": {"name": "flyte-" + "x" * 34}, "spec": {}},
                 {"metadata": {"name": "flyte-" + "x" * 34 + "-gpu1-abc"}, "spec": {"cluster": "flyte-" + "x" * 34}}]
    cluster, group = unique_manifests(manifests, "a1b2c3")
    assert len(cluster["metadata"]["name"]) <= 40 and cluster["metadata"]["name"].endswith("-a1b2c3")
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    assert group["metadata"]["name"] == cluster["metadata"]["name"] + "-gpu1-abc"


def test_a_local_artifact_root_is_refused_for_k8s_unless_shared(home: Path, tmp_path: Path) -> None:
    (tmp_path / "user" / ".kube").mkdir(parents=True)
    (tmp_path / "user" / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    nb = write_notebook(tmp_path / "k8s.ipynb", "n = 3", *NOTEBOOK_TASKS)
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "k8s"], env=_no_kube_env(home, tmp_path),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    line = _one_line_refusal(done)
    assert "FLYTE_LAB_ARTIFACTS" in line and "--shared-fs" in line and "pods" not in line
