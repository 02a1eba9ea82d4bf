"""`flyte-lab k8s-spec` pod templates checked against Kubernetes' own schemas, offline.

The CRD schemas (`test_k8s_spec.py`) leave each pod template open (`x-kubernetes-preserve-unknown-fields`),
so every pod template is validated here as a `Pod` of the newest Kubernetes version kubernetes-validate ships
(strict: unknown fields refused). Its schemas type a resource quantity as "any string", which the API server
would not accept, so quantities are also checked against the quantity grammar Kubernetes documents, and the
names the operator turns into pod labels against the label rules.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLI, cli_env
from tests.test_engine_run import write_notebook

kubernetes_validate = pytest.importorskip("kubernetes_validate")

# Kubernetes' documented quantity grammar (resource.Quantity): a signed decimal number, then a binary SI
# suffix, a decimal SI suffix or a decimal exponent.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY = re.compile(rf"^{_NUMBER}(?:Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

FULL_CONFIG = (
    '[k8s]\nnamespace = "ds"\nbase_image = "reg.example/flyte:2"\nservice_account = "runner"\n'
    'image_pull_secrets = ["regcred"]\nnode_selector = { pool = "batch" }\nmin_workers = 1\nmax_workers = 4\n'
    'tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]\n'
    'env_from_secrets = ["s3-credentials"]\n')


@pytest.fixture
def many_profiles(tmp_path: Path) -> Path:
    """Every kind of profile: GPU, its own image, and each memory unit the header grammar accepts."""
    return write_notebook(
        tmp_path / "a-notebook-with-a-rather-long-file-name.ipynb",
        "%%flyte_task load() -> raw: int\nraw = 1",
        "%%flyte_task train(raw: int) -> model: int --gpu 2 --cpu 0.125 --mem 1.5Gi\nmodel = raw",
        "%%flyte_task report(model: int) -> text: str --image ghcr.io/acme/report:1 --mem 512Mi\ntext = str(model)",
        "%%flyte_task kilo(raw: int) -> k: int --mem 4K\nk = raw",
        "%%flyte_task small(raw: int) -> b: int --mem 100B --cpu 0.25\nb = raw",
        "%%flyte_task decimal(raw: int) -> g: int --mem 2G --cpu 1e3\ng = raw",
        "%%flyte_task lower(raw: int) -> lk: int --mem 64k\nlk = raw",
    )


def _manifests(home: Path, nb: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([*CLI, "k8s-spec", str(nb)], env=cli_env(home), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return list(yaml.safe_load_all(proc.stdout))


def _pod_templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cluster, *groups = docs
    pods = {"scheduler": cluster["spec"]["scheduler"]["spec"], "default": cluster["spec"]["worker"]["spec"]}
    pods.update({g["metadata"]["name"]: g["spec"]["worker"]["spec"] for g in groups})
    return pods


def _validate(kind: str, spec: dict[str, Any], name: str) -> None:
    doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(f"{kind} {name}: {err}") from None


@pytest.mark.parametrize("config", [None, FULL_CONFIG], ids=["defaults", "full-config"])
def test_every_pod_template_is_a_valid_kubernetes_pod(tmp_path: Path, many_profiles: Path,
                                                     config: str | None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if config:
        (home / "config.toml").write_text(config)
    docs = _manifests(home, many_profiles)
    pods = _pod_templates(docs)
    assert len(pods) == 1 + 7  # the scheduler, then one worker group per profile
    for name, pod in pods.items():
        _validate("Pod", pod, name)
    _validate("Service", docs[0]["spec"]["scheduler"]["service"], "scheduler")

    quantities = {}
    for name, pod in pods.items():
        for container in pod["containers"]:
            for kind in ("requests", "limits"):
                for resource, value in container.get("resources", {}).get(kind, {}).items():
                    quantities[(name, kind, resource)] = value
                    assert QUANTITY.match(str(value)), f"{name}: {kind}.{resource} = {value!r} is no quantity"
    memories = {v for (_, _, r), v in quantities.items() if r == "memory"}
    assert memories == {"1.5Gi", "512Mi", "4k", "100", "2G", "64k"}
    gpus = [v for (_, kind, r), v in quantities.items() if r == "nvidia.com/gpu"]
    assert gpus == ["2"]  # an extended resource: a limit only
    images = {pod["containers"][0]["image"] for pod in pods.values()}
    assert "ghcr.io/acme/report:1" in images


def test_worker_group_names_fit_the_pod_labels_the_operator_makes(tmp_path: Path, many_profiles: Path) -> None:
    """Each worker pod is labelled `dask.org/workergroup-name: GROUP` (a label value: at most 63 characters),
    also after `--cluster k8s` puts a random suffix on the cluster name."""
    from flyte_lab.k8s.kube_cluster import unique_manifests

    docs = _manifests(tmp_path / "home", many_profiles)
    for manifests in (docs, unique_manifests(docs, "a1b2c3")):
        names = [d["metadata"]["name"] for d in manifests]
        assert len(set(names)) == len(names)
        for name in names:
            assert len(name) <= 63 and DNS_LABEL.match(name), name
        for group in manifests[1:]:
            assert group["metadata"]["name"].startswith(group["spec"]["cluster"] + "-")
