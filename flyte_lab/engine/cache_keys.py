"""Cache keys: a hash of what determines a task's outputs."""

from __future__ import annotations

import hashlib
import json

from flyte_lab.graph.model import Workflow


def cache_key(wf: Workflow, task_name: str, input_hashes: dict[str, str]) -> str:
    task = wf.tasks[task_name]
    payload = {
        "header": task.header,
        "body": task.body,
        "setup": [cell.source for cell in wf.setup],
        "version": task.options.cache_version,
        "inputs": dict(sorted(input_hashes.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
