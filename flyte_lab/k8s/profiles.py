"""Resource profiles: the distinct (image, cpu, mem, gpu) a notebook's tasks ask for.

Each profile becomes one Dask worker group whose workers advertise a Dask resource that only
that profile's tasks ask for, so a GPU task lands on (and makes appear) a GPU worker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from flyte_lab.graph.model import Workflow

MAX_GROUP_NAME = 63 - 40 - 1


@dataclass(frozen=True)
class Profile:
    image: str
    cpu: float | None = None
    mem: str | None = None
    gpu: int | None = None

    @property
    def is_default(self) -> bool:
        return self.cpu is None and self.mem is None and not self.gpu

    @property
    def tag(self) -> str:
        """The Dask resource this profile's workers advertise and its tasks ask for."""
        digest = hashlib.sha256(repr((self.image, self.cpu, self.mem, self.gpu)).encode()).hexdigest()[:10]
        return f"flyte-profile-{digest}"

    @property
    def group_name(self) -> str:
        """A Kubernetes-safe worker group name (RFC 1123 label)."""
        parts = []
        if self.cpu is not None:
            parts.append(f"cpu{self.cpu:g}")
        if self.mem is not None:
            parts.append(f"mem{self.mem}".lower())
        if self.gpu:
            parts.append(f"gpu{self.gpu}")
        # The operator labels each worker pod with `CLUSTER-GROUP` (`dask.org/workergroup-name`): a label
        # value has at most 63 characters and a cluster name up to 40, which leaves 22 for this name; the
        # hash keeps it unique when the description is cut.
        # `.` (1.5Gi) or `+` (1e+09) have no place in a DNS label
        describe = re.sub(r"[^a-z0-9-]", "p", "-".join(parts) or "default")[:MAX_GROUP_NAME - 7].strip("-")
        return f"{describe}-{self.tag.rsplit('-', 1)[1][:6]}"

    def container_resources(self) -> dict[str, dict[str, str]]:
        """Kubernetes requests and limits: cpu and memory requested and capped, GPUs as `nvidia.com/gpu`."""
        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        if self.cpu is not None:
            requests["cpu"] = limits["cpu"] = f"{self.cpu:g}"
        if self.mem is not None:
            requests["memory"] = limits["memory"] = kubernetes_memory(self.mem)
        if self.gpu:
            limits["nvidia.com/gpu"] = str(self.gpu)  # extended resources are set as limits
        out: dict[str, dict[str, str]] = {}
        if requests:
            out["requests"] = requests
        if limits:
            out["limits"] = limits
        return out

    def dask_resources(self) -> dict[str, float]:
        from flyte_lab.graph.header import memory_bytes

        out: dict[str, float] = {self.tag: 1.0}
        if self.cpu is not None:
            out["CPU"] = float(self.cpu)
        if self.mem is not None:
            out["MEMORY"] = memory_bytes(self.mem)
        if self.gpu:
            out["GPU"] = float(self.gpu)
        return out


def kubernetes_memory(mem: str) -> str:
    """A `--mem` value as a Kubernetes quantity: the header's `K` (kilobytes, as Dask reads it) is `k` there,
    and plain bytes take no unit (`B` is no Kubernetes suffix: the API server refuses `512B`)."""
    if mem.endswith("K"):
        return mem[:-1] + "k"
    return mem.removesuffix("B")


def profile_of(wf: Workflow, task: str, base_image: str) -> Profile:
    options = wf.tasks[task].options
    return Profile(image=options.image or base_image, cpu=options.cpu, mem=options.mem, gpu=options.gpu or None)


def profiles_of(wf: Workflow, base_image: str) -> dict[Profile, list[str]]:
    """Each distinct profile with its tasks, in a stable order (the default profile first)."""
    groups: dict[Profile, list[str]] = {}
    for name in wf.order:
        groups.setdefault(profile_of(wf, name, base_image), []).append(name)
    # the default profile first; the others in the order their first task appears
    return dict(sorted(groups.items(), key=lambda item: not item[0].is_default))
