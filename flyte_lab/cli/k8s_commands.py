"""`flyte-lab k8s-spec NOTEBOOK`: the dask-kubernetes manifests `--cluster k8s` would create, as YAML."""

from __future__ import annotations

import argparse

from flyte_lab.errors import ValidationFailed


def k8s_spec(args: argparse.Namespace) -> int:
    from flyte_lab.graph.validate import validate_notebook
    from flyte_lab.k8s.config import load_config
    from flyte_lab.k8s.manifests import build_manifests, require_k8s_extra, to_yaml

    require_k8s_extra("`flyte-lab k8s-spec`")
    wf = validate_notebook(args.notebook)
    if wf.errors:
        raise ValidationFailed(wf.errors[0].format(args.notebook), diagnostics=[d.as_json() for d in wf.diagnostics])
    print(to_yaml(build_manifests(wf, load_config())), end="")
    return 0
