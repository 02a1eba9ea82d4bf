"""Fix-and-continue: which tasks of an interrupted (or edited) run are reused, which rerun, and why.

A succeeded task is reused when every task upstream of it is reused and its cache key — its
header, body, setup cells, cache version and the content hashes of its inputs — is the one
recorded when it ran. Anything else reruns, and so does everything downstream of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flyte_lab.engine.cache_keys import cache_key
from flyte_lab.graph.model import Workflow
from flyte_lab.statuses import TASK_DONE, TaskStatus


@dataclass
class ResumePlan:
    prior: dict[str, str] = field(default_factory=dict)  # for the state machine: TASK_DONE statuses are kept
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # reused tasks' outputs
    reasons: dict[str, str] = field(default_factory=dict)  # task -> why it reruns ("" when reused)

    def describe(self) -> list[str]:
        reused = [t for t, why in self.reasons.items() if not why]
        lines = [f"reusing {', '.join(reused)} (unchanged)"] if reused else []
        lines += [f"rerunning {task} ({why})" for task, why in self.reasons.items() if why]
        return lines


def plan_resume(wf: Workflow, prior_tasks: dict[str, dict[str, Any]],
                outputs_of: Callable[[str], dict[str, dict[str, Any]]],
                input_refs: dict[tuple[str, str], dict[str, Any]], edited: bool) -> ResumePlan:
    plan = ResumePlan()
    for name in wf.order:
        before = prior_tasks.get(name, {})
        status = str(before.get("status") or TaskStatus.QUEUED)
        why = ""
        stale = [up for up in wf.upstream(name) if plan.reasons.get(up)]
        if stale:
            why = f"downstream of {', '.join(stale)}"
        elif status not in TASK_DONE:
            why = f"it was {status}"
        else:
            outputs = outputs_of(name)
            if edited:
                hashes = {}
                for param in wf.tasks[name].inputs:
                    producer = wf.producer_of(param.name)
                    entry = plan.outputs[producer][param.name] if producer else input_refs[(name, param.name)]
                    hashes[param.name] = entry["content_hash"]
                recorded = before.get("cache_key")
                if not recorded:
                    why = "no cache key was recorded for it"
                elif cache_key(wf, name, hashes) != recorded:
                    why = "its code, setup cells or inputs changed"
            if not why:
                plan.outputs[name] = outputs
        plan.reasons[name] = why
        # a rerun of a task that had succeeded must be stored as queued again: give the machine a status that is
        # neither done nor queued
        plan.prior[name] = status if not why else ("stale" if status in TASK_DONE else status)
    return plan
