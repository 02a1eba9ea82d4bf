"""Rows to the public dictionaries: the `show --json` and `runs --json` shapes.

DESIGN.md section 3 is the contract for these keys; keep them in step with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flyte_lab.store.rows import iso, loads


def show_view(
    run: Any, tasks: Sequence[Any], outputs: Sequence[Any], attempts: Sequence[Any],
    scale_events: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The `show --json` object, plus `schedule`, `scheduled_time`, `error`, `attempts_detail`,
    `scale_events` (worker groups scaled by `--cluster k8s`'s autoscaler, oldest first) and `notes` (what the
    driver recorded once about how the tasks ran, e.g. why their kernels were not forked)."""
    task_outputs: dict[str, dict[str, Any]] = {}
    for o in outputs:
        task_outputs.setdefault(o.task, {})[o.name] = {
            "type": o.type_text,
            "uri": o.uri,
            "preview": o.preview,
        }
    options = loads(run.options_json) or {}
    reused_from = options.get("reused") or {}  # a partial run's sources (`engine/reuse_sources.py`)
    detail: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tasks}
    for a in attempts:
        detail.setdefault(a.task, []).append(attempt_view(a))
    return {
        "run_id": run.run_id,
        "notebook": run.notebook,
        "status": run.status,
        "params": loads(run.params_json),
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "idle_s": run.idle_s,
        "tasks": {
            t.name: {
                "status": t.status,
                "attempts": t.attempts,
                "cell": t.cell,
                "duration_s": t.duration_s,
                "resources": loads(t.resources_json),
                "output_notebook": t.output_notebook,
                "outputs": task_outputs.get(t.name, {}),
                "error": loads(t.error_json),
                # its latest attempt's: what the task's --cpu/--mem are judged against
                "usage": next((a["usage"] for a in reversed(detail.get(t.name, [])) if a["usage"]), None),
                "reused_from": reused_from.get(t.name),
            }
            for t in tasks
        },
        "partial": partial_view(options),
        "schedule": run.schedule,
        "scheduled_time": iso(run.scheduled_time),
        "cluster": run.cluster,
        "error": loads(run.error_json),
        "cancelled_by": run.cancelled_by,
        "attempts_detail": detail,
        "scale_events": list(scale_events),
        "notes": loads(run.notes_json) or [],
    }


def partial_view(options: dict[str, Any]) -> dict[str, Any] | None:
    """A partial run's selection as launched (`--only`/`--from`/`--to`, `--reuse`, `--allow-changed`); None for
    a run of every task."""
    if not options.get("select"):
        return None
    return {"select": options["select"], "reuse": options.get("reuse"),
            "allow_changed": bool(options.get("allow_changed"))}


def summary_view(run: Any) -> dict[str, Any]:
    """One element of the `runs --json` array."""
    return {
        "run_id": run.run_id,
        "notebook": run.notebook,
        "status": run.status,
        "schedule": run.schedule,
        "scheduled_time": iso(run.scheduled_time),
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
        "cancelled_by": run.cancelled_by,
        "idle_s": run.idle_s,
    }


def run_summary_views(runs: Sequence[Any], tasks: Sequence[Any], outputs: Sequence[Any],
                      graphs: dict[str, Any]) -> list[dict[str, Any]]:
    """The elements of `RunStore.run_summaries`: each run's summary with its tasks' states and counts."""
    by_run: dict[str, dict[str, dict[str, Any]]] = {r.run_id: {} for r in runs}
    for t in tasks:
        by_run[t.run_id][t.name] = {"status": t.status, "cell": t.cell, "error": loads(t.error_json), "outputs": {}}
    for o in outputs:
        if o.task in by_run[o.run_id]:
            by_run[o.run_id][o.task]["outputs"][o.name] = {"uri": o.uri}
    views = []
    for r in runs:
        counts: dict[str, int] = {}
        for task in by_run[r.run_id].values():
            counts[task["status"]] = counts.get(task["status"], 0) + 1
        views.append(dict(summary_view(r), started_at=iso(r.started_at), params=loads(r.params_json),
                          task_counts=counts, tasks=by_run[r.run_id], graph=graphs.get(r.run_id)))
    return views


def record_view(run: Any) -> dict[str, Any]:
    """The whole run row but the graph: driver pid/host, cluster, notebook hash…"""
    return {
        "run_id": run.run_id,
        "notebook": run.notebook,
        "status": run.status,
        "params": loads(run.params_json),
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "schedule": run.schedule,
        "scheduled_time": iso(run.scheduled_time),
        "driver_pid": run.driver_pid,
        "driver_host": run.driver_host,
        "cluster": run.cluster,
        "notebook_hash": run.notebook_hash,
        "error": loads(run.error_json),
        "options": loads(run.options_json) or {},
        "lease_owner": run.lease_owner,
    }


def task_state_view(task: Any) -> dict[str, Any]:
    """A task's state as the driver and `resume` need it."""
    return {
        "status": task.status,
        "attempts": task.attempts,
        "cell": task.cell,
        "resources": loads(task.resources_json),
        "cache_key": task.cache_key,
        "output_notebook": task.output_notebook,
        "error": loads(task.error_json),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_s": task.duration_s,
    }


def attempt_view(a: Any) -> dict[str, Any]:
    """One element of `attempts_detail[task]`."""
    return {
        "number": a.number,
        "status": a.status,
        "kind": a.kind,
        "worker": a.worker,
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "error": loads(a.error_json),
        "output_notebook": a.output_notebook,
        "usage": loads(a.usage_json),
    }
