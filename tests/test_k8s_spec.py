"""`flyte-lab k8s-spec`: manifests built with dask-kubernetes' own builders, validated offline against the
CRD schemas that ship inside dask-kubernetes (no Kubernetes API server can run here), and the worker
image's Dockerfile linted with hadolint.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import CLI, cli_env
from tests.test_engine_run import write_notebook

ROOT = Path(__file__).parent.parent


def _crd_schema(kind: str) -> dict[str, Any]:
    import dask_kubernetes

    crds = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
    crd = yaml.safe_load((crds / f"{kind.lower()}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _spec(home: Path, nb: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "k8s-spec", str(nb)], env=cli_env(home), capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(
        tmp_path / "profiles.ipynb",
        "%%flyte_task load() -> raw: int\nraw = 1",
        "%%flyte_task crunch(raw: int) -> big: int --cpu 2 --mem 4Gi\nbig = raw",
        "%%flyte_task train(big: int) -> model: int --gpu 1 --mem 8Gi\nmodel = big",
        "%%flyte_task report(model: int) -> text: str --image ghcr.io/acme/report:1\ntext = str(model)",
        "%%flyte_task crunch2(raw: int) -> big2: int --cpu 2 --mem 4Gi\nbig2 = raw",
    )


def test_one_worker_group_per_profile_valid_against_the_crds(tmp_path: Path, notebook: Path) -> None:
    proc = _spec(tmp_path / "home", notebook)
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == ["DaskCluster", "DaskWorkerGroup", "DaskWorkerGroup", "DaskWorkerGroup"]
    for doc in docs:
        jsonschema.validate(doc, _crd_schema(doc["kind"]))
    cluster, *groups = docs
    assert cluster["metadata"]["name"] == "flyte-profiles"
    assert all(g["spec"]["cluster"] == "flyte-profiles" for g in groups)
    workers = [cluster["spec"]["worker"], *(g["spec"]["worker"] for g in groups)]
    containers = [w["spec"]["containers"][0] for w in workers]
    assert all(w["replicas"] == 0 for w in workers)  # groups scale up from zero
    gpu = next(c for c in containers if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {}))
    assert gpu["resources"] == {"requests": {"memory": "8Gi"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"}}
    cpu = next(c for c in containers if c.get("resources", {}).get("requests", {}).get("cpu") == "2")
    assert cpu["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert len({(c["image"], str(c.get("resources"))) for c in containers}) == 4
    # each group's workers advertise their own profile's resource, and only that one
    tags = set()
    for c in containers:
        spec = c["args"][c["args"].index("--resources") + 1]
        tags.add(next(part for part in spec.split(",") if part.startswith("flyte-profile-")))
    assert len(tags) == 4
    assert {c["image"] for c in containers} == {"ghcr.io/flyte-lab/worker:0.1.0", "ghcr.io/acme/report:1"}


def test_the_config_file_shapes_every_pod(tmp_path: Path, notebook: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[k8s]\nnamespace = "ds"\nbase_image = "reg.example/flyte:2"\nservice_account = "runner"\n'
        'image_pull_secrets = ["regcred"]\nnode_selector = { pool = "batch" }\nmin_workers = 1\nmax_workers = 4\n'
        'tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]\n'
        'env_from_secrets = ["s3-credentials"]\n')
    proc = _spec(home, notebook)
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    for doc in docs:
        jsonschema.validate(doc, _crd_schema(doc["kind"]))
        assert doc["metadata"]["namespace"] == "ds"
    pods = [docs[0]["spec"]["scheduler"]["spec"], docs[0]["spec"]["worker"]["spec"],
            *(d["spec"]["worker"]["spec"] for d in docs[1:])]
    for pod in pods:
        assert pod["serviceAccountName"] == "runner"
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["nodeSelector"] == {"pool": "batch"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert docs[0]["spec"]["worker"]["replicas"] == 1
    assert docs[0]["spec"]["scheduler"]["spec"]["containers"][0]["image"] == "reg.example/flyte:2"


@pytest.mark.parametrize(("config", "fragment"), [
    ("[k8s]\nnamespace = ", "not valid TOML"),
    ("[k8s]\nnamspace = 'x'\n", "unknown [k8s] key 'namspace'"),
    ("[k8s]\nmax_workers = 0\n", "max_workers >= 1"),
    ("[k8s]\nidle_timeout_s = 0\n", "idle_timeout_s must be a number of seconds above 0"),
], ids=["not-toml", "unknown-key", "bad-bounds", "bad-idle-timeout"])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path, notebook: Path, config: str, fragment: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(config)
    proc = _spec(home, notebook)
    assert proc.returncode == 2
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_worker_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(ROOT / "docker/worker.Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# runs the CLI as if the `k8s` extra were not installed: an import hook refuses its packages
WITHOUT_K8S_EXTRA = """
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask_kubernetes", "kubernetes", "kubernetes_asyncio", "kr8s"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from flyte_lab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("argv", "what"), [(["k8s-spec"], "`flyte-lab k8s-spec`"),
                                            (["run", "--cluster", "k8s"], "--cluster k8s")])
def test_without_the_k8s_extra_it_is_one_line_saying_what_to_install(tmp_path: Path, notebook: Path,
                                                                      argv: list[str], what: str) -> None:
    proc = subprocess.run([CLI[0], "-c", WITHOUT_K8S_EXTRA, *argv, str(notebook)], env=cli_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"flyte-lab: error: {what} needs the `k8s` extra, which is not installed (dask_kubernetes): "
        "pip install 'flyte_lab[k8s]'"]
    assert not (tmp_path / "home").exists()  # nothing stored
