"""`FLYTE_LAB_HOME/config.toml`, section `[k8s]`: where and how worker pods run.

```toml
[k8s]
namespace = "data-science"
base_image = "ghcr.io/acme/flyte-lab-worker:0.1.0"
service_account = "flyte-lab"
image_pull_secrets = ["regcred"]
node_selector = { "cloud.google.com/gke-nodepool" = "workers" }
tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
max_workers = 10          # per worker group; groups scale between min_workers (default 0) and this
idle_timeout_s = 60       # a group with fewer waiting tasks than workers shrinks after this long
env_from_secrets = ["s3-credentials"]   # Kubernetes secrets exposed to workers (e.g. AWS_* for s3://)
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flyte_lab.errors import UserInputError

DEFAULT_IMAGE = "ghcr.io/flyte-lab/worker:0.1.0"
_KEYS = {"namespace", "base_image", "service_account", "image_pull_secrets", "node_selector", "tolerations",
         "max_workers", "min_workers", "env_from_secrets", "idle_timeout_s"}


@dataclass(frozen=True)
class K8sConfig:
    namespace: str = "default"
    base_image: str = DEFAULT_IMAGE
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    min_workers: int = 0
    max_workers: int = 10
    env_from_secrets: tuple[str, ...] = ()
    idle_timeout_s: float = 60.0


def load_config(home: str | Path | None = None) -> K8sConfig:
    folder = Path(home or os.environ.get("FLYTE_LAB_HOME") or "~/.flyte_lab").expanduser()
    path = folder / "config.toml"
    if not path.is_file():
        return K8sConfig()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not valid TOML ({exc})") from None
    section = data.get("k8s", {})
    if not isinstance(section, dict):
        raise UserInputError(f"{path}: [k8s] must be a table")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise UserInputError(f"{path}: unknown [k8s] key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    try:
        config = K8sConfig(
            namespace=str(section.get("namespace", "default")),
            base_image=str(section.get("base_image", DEFAULT_IMAGE)),
            service_account=section.get("service_account"),
            image_pull_secrets=tuple(str(s) for s in section.get("image_pull_secrets", ())),
            node_selector={str(k): str(v) for k, v in dict(section.get("node_selector", {})).items()},
            tolerations=tuple(dict(t) for t in section.get("tolerations", ())),
            min_workers=int(section.get("min_workers", 0)),
            max_workers=int(section.get("max_workers", 10)),
            env_from_secrets=tuple(str(s) for s in section.get("env_from_secrets", ())),
            idle_timeout_s=float(section.get("idle_timeout_s", 60.0)),
        )
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{path}: bad [k8s] value ({exc})") from None
    if not 0 <= config.min_workers <= config.max_workers or config.max_workers < 1:
        raise UserInputError(f"{path}: [k8s] needs 0 <= min_workers <= max_workers and max_workers >= 1")
    if not 0 < config.idle_timeout_s < float("inf"):
        raise UserInputError(f"{path}: [k8s] idle_timeout_s must be a number of seconds above 0")
    return config
