"""Launching and resuming runs: validate, record, connect to Dask, drive. The CLI and notebooks call this."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flyte_lab.errors import UserInputError, ValidationFailed
from flyte_lab.graph.model import Workflow
from flyte_lab.graph.validate import graph_json, jsonable, resolve_params, validate_notebook

Progress = Callable[[str, dict[str, str]], None]


def flyte_home() -> Path:
    home = Path(os.environ.get("FLYTE_LAB_HOME") or Path.home() / ".flyte_lab")
    home.mkdir(parents=True, exist_ok=True)
    return home


def notebook_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _validated(path: str, params: dict[str, Any]) -> tuple[Workflow, dict[str, Any]]:
    wf = validate_notebook(path, cli_params=params, launching=True)
    if wf.errors:
        first = wf.errors[0]
        more = f" (and {len(wf.errors) - 1} more; `flyte-lab validate {path}` lists them)" if len(wf.errors) > 1 else ""
        raise ValidationFailed(first.format(path) + more, diagnostics=[d.as_json() for d in wf.diagnostics])
    return wf, resolve_params(wf, params)


def _secrets(wf: Workflow) -> dict[str, dict[str, str]]:
    """`--env K=$NAME` reads NAME from the launching environment; plain `--env K=V` is passed as written."""
    out: dict[str, dict[str, str]] = {}
    for task in wf.tasks.values():
        env = {}
        for key, value in task.options.env:
            if value.startswith("$"):
                name = value[1:]
                if name not in os.environ:
                    raise UserInputError(f"task `{task.name}` (cell {task.cell}): `--env {key}={value}` needs "
                                         f"`{name}` set in the environment that launches the run")
                env[key] = os.environ[name]
            else:
                env[key] = value
        if env:
            out[task.name] = env
    return out


def _input_refs(wf: Workflow, values: dict[str, Any], artifacts: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Each workflow input of each task as an artifact: launch value, else the task's default, else parameters."""
    from flyte_lab.graph.builder import expected_type
    from flyte_lab.graph.params import coerce

    refs: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in wf.workflow_inputs.values():
        for task_name in spec.consumers:
            task = wf.tasks[task_name]
            param = task.input(spec.name)
            assert param is not None
            if spec.name in values:
                value = values[spec.name]
            elif param.has_default:
                value = param.default
            else:
                value = wf.parameters[spec.name]
            ref_type = expected_type(task, param)
            value = coerce(value, ref_type, spec.name)
            ref = artifacts.put(value, ref_type)
            refs[(task_name, spec.name)] = {"uri": ref.uri, "content_hash": ref.content_hash,
                                            "type": ref_type.display()}
    return refs


def run_notebook(path: str, params: dict[str, Any], cluster: str = "local", workers: int | None = None,
                 use_cache: bool = True, on_created: Callable[[str], None] | None = None,
                 on_change: Callable[[dict[str, str]], None] | None = None, schedule: str | None = None,
                 scheduled_time: datetime | None = None,
                 on_finished: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Validate (refusing with exit 2 before anything is stored), record the run, execute it; the `show` record.

    `schedule`/`scheduled_time` mark a scheduled run (the store refuses a second run for the same
    pair with `ScheduledRunExists`); `on_finished` gets the record of a run that ended (notifications).
    """
    wf, values = _validated(path, params)
    secrets = _secrets(wf)
    from flyte_lab.engine.artifacts import ArtifactStore
    from flyte_lab.store import RunStore

    home = flyte_home()
    store = RunStore.from_env(str(home))
    artifacts = ArtifactStore.from_env(str(home))
    refs = _input_refs(wf, values, artifacts)
    tasks = [{"name": n, "cell": wf.tasks[n].cell, "resources": wf.tasks[n].options.resources()} for n in wf.order]
    run_id = store.create_run(str(Path(path).resolve()), jsonable(values), graph_json(wf), tasks, cluster,
                              schedule, scheduled_time, notebook_hash=notebook_hash(path))
    if on_created:
        on_created(run_id)
    try:
        _drive(store, artifacts, wf, run_id, home, refs, secrets, cluster, workers, use_cache, on_change)
    finally:
        if on_finished is not None:
            record = store.get_run(run_id)
            if record["status"] in ("succeeded", "failed"):
                on_finished(record)
    return store.get_run(run_id)


def resume_run(run_id: str, cluster: str | None = None, workers: int | None = None,
               on_change: Callable[[dict[str, str]], None] | None = None) -> dict[str, Any]:
    """Finish a failed or interrupted run: tasks that succeeded (or were cached) keep their outputs."""
    from flyte_lab.engine.artifacts import ArtifactStore
    from flyte_lab.store import RunStore

    home = flyte_home()
    store = RunStore.from_env(str(home))
    record = store.run_record(run_id)
    run = store.get_run(run_id)
    run_id = run["run_id"]
    if run["status"] in ("succeeded",):
        raise UserInputError(f"run `{run_id}` already succeeded; nothing to resume")
    path = run["notebook"]
    if not Path(path).is_file():
        raise UserInputError(f"run `{run_id}`: its notebook {path} no longer exists")
    if record.get("notebook_hash") and record["notebook_hash"] != notebook_hash(path):
        raise UserInputError(f"run `{run_id}`: {path} changed since the run started; start a new run instead")
    wf, values = _validated(path, {k: v for k, v in run["params"].items()})
    secrets = _secrets(wf)
    artifacts = ArtifactStore.from_env(str(home))
    refs = _input_refs(wf, values, artifacts)
    prior = {name: t["status"] for name, t in run["tasks"].items()}
    prior_attempts = {name: t["attempts"] for name, t in run["tasks"].items()}
    prior_outputs = {name: store.get_outputs(run_id, name) for name, status in prior.items()
                     if status in ("succeeded", "cached")}
    for task, attempts in run.get("attempts_detail", {}).items():
        for attempt in attempts:
            if attempt["status"] == "running":  # its driver died mid-attempt
                store.finish_attempt(run_id, task, attempt["number"], "failed", kind="infra", error={
                    "type": "DriverLost", "message": "the driver of this run stopped during this attempt",
                    "cell": None, "line": None, "traceback": ""})
    _drive(store, artifacts, wf, run_id, home, refs, secrets, cluster or record.get("cluster") or "local", workers,
           True, on_change, prior=prior, prior_attempts=prior_attempts, prior_outputs=prior_outputs)
    return store.get_run(run_id)


def _drive(store: Any, artifacts: Any, wf: Workflow, run_id: str, home: Path, refs: Any, secrets: Any, cluster: str,
           workers: int | None, use_cache: bool, on_change: Any, **prior: Any) -> None:
    from flyte_lab.engine.clusters import connect, local_workers
    from flyte_lab.engine.driver import RunDriver

    if cluster == "local":
        from flyte_lab.engine.kernels import reserve

        reserve(local_workers(workers))  # kernels start while the cluster does

    try:
        with connect(cluster, workers) as client:
            RunDriver(store=store, artifacts=artifacts, wf=wf, run_id=run_id, client=client, home=home,
                      input_refs=refs, secrets=secrets, use_cache=use_cache, on_change=on_change, **prior).run()
    except UserInputError as exc:
        store.set_run_status(run_id, "failed", error={"type": type(exc).__name__, "message": exc.message})
        raise


def get_run(run_id: str) -> dict[str, Any]:
    from flyte_lab.store import RunStore

    return RunStore.from_env(str(flyte_home())).get_run(run_id)
