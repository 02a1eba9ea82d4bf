"""Launching, resuming and cancelling runs: validate, record, claim, connect to Dask, drive.

The CLI, notebooks, the scheduler and the REST layer call this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.attempt_records import ErrorRecord
from flyte_lab.engine.resume_plan import ResumePlan, plan_resume
from flyte_lab.engine.reuse_sources import artifact_present, plan_reuse, store_candidates
from flyte_lab.errors import (
    DriverError,
    FlyteLabError,
    NoStore,
    RunNotFound,
    SelectionRefused,
    UserInputError,
    ValidationFailed,
)
from flyte_lab.graph.model import Workflow
from flyte_lab.graph.selection import Selection, needed_upstream, select_tasks
from flyte_lab.graph.validate import decode_values, encode_values, graph_json, resolve_params, validate_notebook
from flyte_lab.notebook_hash import hash_notebook
from flyte_lab.statuses import CancelSource, RunStatus, TaskStatus

if TYPE_CHECKING:
    from flyte_lab.engine.state_machine import RunStateMachine
    from flyte_lab.store import RunStore

OnChange = Callable[[Any], None]
OnEvent = Callable[[str], None]
# called with the run's state machine once its driver stops: `story(task)`, `stimulus_log`, final states
OnDriven = Callable[["RunStateMachine"], None]


def lease_ttl() -> float:
    """Seconds a driver's (and a cache lock's) lease lasts without renewal; tests shorten it."""
    from flyte_lab.engine.state_machine import LEASE_TTL_S

    return float(os.environ.get("FLYTE_LAB_LEASE_TTL") or LEASE_TTL_S)


def flyte_home(create: bool = True) -> Path:
    from flyte_lab.private_fs import make_private_home

    home = Path(os.environ.get("FLYTE_LAB_HOME") or Path.home() / ".flyte_lab").expanduser()
    if create:
        make_private_home(home)
    return home


def _validated(path: str, params: dict[str, Any], stored: bool = False) -> tuple[Workflow, dict[str, Any]]:
    """The workflow and its launch values: `-p` text parsed by type, or (`stored`) a run record's params."""
    wf = validate_notebook(path, cli_params=params, launching=True)
    if wf.errors:
        first = wf.errors[0]
        more = f" (and {len(wf.errors) - 1} more; `flyte-lab validate {path}` lists them)" if len(wf.errors) > 1 else ""
        raise ValidationFailed(first.format(path) + more, diagnostics=[d.as_json() for d in wf.diagnostics])
    return wf, decode_values(wf, params) if stored else resolve_params(wf, params)


def secret_env(wf: Workflow) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Each task's `--env` (K=$NAME read from the launching environment), and the names no other
    task's kernel may see: every $NAME source and every key that carries a secret."""
    out: dict[str, dict[str, str]] = {}
    scrub: set[str] = set()
    for task in wf.tasks.values():
        env = {}
        for key, value in task.options.env:
            if value.startswith("$"):
                name = value[1:]
                if name not in os.environ:
                    raise UserInputError(f"task `{task.name}` (cell {task.cell}): `--env {key}={value}` needs "
                                         f"`{name}` set in the environment that launches the run")
                env[key] = os.environ[name]
                scrub.update((name, key))
            else:
                env[key] = value
        if env:
            out[task.name] = env
    if scrub:
        from flyte_lab.private_process import hide_memory

        hide_memory()  # this process holds them now (and in its environment): closed to the user's other processes
    return out, sorted(scrub)


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
            if task.options.map_over == spec.name:
                # stored element by element, so each element task reads only its own
                ref = artifacts.put_elements(list(value), param.type)
            else:
                ref = artifacts.put(value, ref_type)
            refs[(task_name, spec.name)] = {"uri": ref.uri, "content_hash": ref.content_hash,
                                            "type": ref_type.display()}
    return refs


def _check_cluster(cluster: str, wf: Workflow) -> None:
    if cluster not in ("shared", "local", "k8s") and not cluster.startswith("tcp://"):
        raise UserInputError(f"--cluster {cluster}: expected shared, local, tcp://HOST:PORT or k8s")
    if cluster == "k8s":  # no credentials, no dask-kubernetes: one line, before anything is recorded
        from flyte_lab.k8s.kube_cluster import check_ready

        check_ready()
    if cluster in ("shared", "local"):  # remote workers have their own kernelspecs: they report a missing one per task
        from flyte_lab.engine.worker.kernelspecs import missing_kernelspec

        why = missing_kernelspec(wf.kernel_name)
        if why:
            raise UserInputError(f"{wf.path}: {why}")


def _check_remote_workers(cluster: str, wf: Workflow, allow: bool) -> list[Any]:
    """A `tcp://` cluster's workers compared with this process before the run is recorded: a difference refuses
    the run (nothing stored) unless `allow`. Local clusters share this environment; a k8s cluster's workers
    exist only once the run started them (not checked here)."""
    if not cluster.startswith("tcp://"):
        return []
    from distributed import Client

    from flyte_lab.engine.env_check import check_workers

    try:
        client = Client(cluster, timeout=10, set_as_default=False)
    except OSError as exc:
        raise UserInputError(f"--cluster {cluster}: cannot reach a Dask scheduler there ({exc})") from None
    with client:
        return check_workers(client, wf, cluster, allow)


def _start_local_kernels(cluster: str, workers: int | None, wf: Workflow, scrub: list[str], keep: bool) -> None:
    """The local cluster's kernels (and their template's imports) start in the background as soon as the
    workflow is valid: while the store opens, the run is recorded and Dask starts, not after. Kept ones
    (`keep`) serve this run only if they are what it would start itself."""
    if cluster != "local":
        return
    from flyte_lab.engine.attempt_spec import setup_modules
    from flyte_lab.engine.clusters import local_workers
    from flyte_lab.engine.worker.kernels import close_unfit, reserve

    if keep:
        close_unfit(wf.kernel_name, setup_modules(wf))
    reserve(local_workers(workers), wf.kernel_name, setup_modules(wf), scrub)


def _check_artifact_root(cluster: str, shared_fs: bool) -> None:
    """Refuse artifacts the workers could not reach or nobody can write, before the home, the store or the
    artifact key is created."""
    from flyte_lab.engine.artifacts import root_url_from_env
    from flyte_lab.engine.clusters import check_artifact_access, check_artifact_root

    root_url = root_url_from_env(str(flyte_home(create=False)))
    check_artifact_root(cluster, root_url, shared_fs)
    check_artifact_access(root_url)


def _stores(home: Path) -> tuple[Any, Any]:
    from flyte_lab.engine.artifacts import ArtifactStore
    from flyte_lab.store import RunStore

    return RunStore.from_env(str(home)), ArtifactStore.from_env(str(home))  # never unpickles (DESIGN.md 3)


def run_notebook(path: str, params: dict[str, Any], cluster: str = "local", workers: int | None = None,
                 use_cache: bool = True, shared_fs: bool = False, on_created: Callable[[str], None] | None = None,
                 on_change: OnChange | None = None, on_event: OnEvent | None = None,
                 on_finished: Callable[[dict[str, Any]], None] | None = None, keep_cluster: bool = False,
                 on_driven: OnDriven | None = None, allow_env_mismatch: bool = False,
                 select: Selection | None = None, reuse: str | None = None,
                 allow_changed: bool = False, **launch: Any) -> dict[str, Any]:
    """Validate (refusing with exit 2 before anything is stored), record the run, execute it; the `show` record.

    `cluster`: "shared" (the user's warm executor, `engine/shared_executor.py`: what the CLI, Lab and the
    scheduler use), "local" (a private cluster in this process), tcp://HOST:PORT or k8s. `keep_cluster`: a local
    cluster and its kernels stay for this process's next runs (`engine/kept_cluster.py`).

    `launch` may carry `schedule` and `scheduled_time` (a scheduled run: the store refuses a second run for
    the same pair with `ScheduledRunExists`); `on_finished` gets the record of a run that ended (notifications).
    `on_driven` gets the run's state machine once its driver stopped, to read how the run went from the machine
    itself (`RunStateMachine.story(task)`: each stimulus with its id and the instructions it produced).
    `allow_env_mismatch`: a `tcp://` cluster whose workers' versions differ from this process's runs anyway (the
    run records the differences); otherwise it is refused before anything is stored (`engine/env_check.py`).

    `select` runs part of the graph (`graph/selection.py`); the unselected tasks it depends on are recorded
    `reused` with the outputs of the newest earlier run of the notebook in which they are still valid, or of the
    run `reuse` names (`allow_changed`: even if their code changed since). Refused (exit 2) when none fits.
    """
    from flyte_lab.store.leases import driver_identity

    wf, values = _validated(path, params)
    select = select or Selection()
    selected, needed = _selected(wf, select, reuse, allow_changed)
    _check_cluster(cluster, wf)
    env_differences = _check_remote_workers(cluster, wf, allow_env_mismatch)
    secrets, scrub = secret_env(wf)
    _start_local_kernels(cluster, workers, wf, scrub, keep_cluster)
    try:
        _check_artifact_root(cluster, shared_fs)
        notebook = str(Path(path).resolve())
        direct = _direct(wf, selected, needed)
        if needed:  # a fresh home: refused before anything is created
            _refuse_without_store(wf, needed, direct, select, reuse)
        store, artifacts = _stores(flyte_home())
        refs = _input_refs(wf, values, artifacts)
        reused = plan_reuse(wf, needed, direct, store_candidates(store, notebook, reuse), refs,
                            present=artifact_present(artifacts), selection=select.describe(), named=reuse,
                            allow_changed=allow_changed)
        tasks = [{"name": n, "cell": wf.tasks[n].cell, "resources": wf.tasks[n].options.resources()}
                 for n in wf.order if n in selected or n in reused]
        options: dict[str, Any] = {"use_cache": use_cache, "shared_fs": shared_fs}
        if env_differences:
            options["env_differences"] = [d.as_json() for d in env_differences]
        if allow_env_mismatch:
            options["allow_env_mismatch"] = True  # workers that join later check themselves the same way
        if not select.everything:
            options.update(select=select.as_json(), reuse=reuse, allow_changed=allow_changed,
                           reused={t: r.provenance() for t, r in reused.items()})
        run_id = store.create_run(notebook, encode_values(wf, values), graph_json(wf), tasks,
                                  cluster, notebook_hash=hash_notebook(path), options=options,
                                  reused={t: r.row() for t, r in reused.items()}, **launch)
        fence = store.claim_run(run_id, driver_identity(), lease_ttl())
        for difference in env_differences:
            store.add_run_note(run_id, f"environment differs (--allow-env-mismatch): {difference.line()}", fence=fence)
    except BaseException:
        if cluster == "local" and not keep_cluster:  # refused before it ran (e.g. a scheduled run that exists)
            from flyte_lab.engine.worker.kernels import close_pools

            close_pools()
        raise
    if on_created:
        on_created(run_id)
    try:
        _drive(store, artifacts, wf, run_id, fence, refs, secrets, scrub, cluster, workers, use_cache, on_change,
               on_event, keep=keep_cluster, on_driven=on_driven, tasks=[t["name"] for t in tasks],
               prior=dict.fromkeys(reused, TaskStatus.REUSED),
               prior_outputs={t: r.outputs for t, r in reused.items()})
    finally:
        if on_finished is not None:
            record = store.get_run(run_id)
            if record["status"] in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                on_finished(record)  # notifications: never fail the run
    return dict(store.get_run(run_id))


def _selected(wf: Workflow, select: Selection, reuse: str | None, allow_changed: bool) -> tuple[list[str], list[str]]:
    """The tasks a launch runs and the unselected ones they need, after the options' own refusals."""
    if reuse is not None and select.everything:
        raise SelectionRefused(f"--reuse {reuse}: needs --only, --from or --to (a run of every task reuses nothing)")
    if allow_changed and reuse is None:
        raise SelectionRefused("--allow-changed needs --reuse RUN_ID: the run whose changed outputs to take")
    upstream = {name: wf.upstream(name) for name in wf.order}
    selected = select_tasks(wf.order, upstream, select)
    return selected, needed_upstream(wf.order, upstream, selected)


def _direct(wf: Workflow, selected: list[str], needed: list[str]) -> list[str]:
    """The needed tasks a selected task reads itself: the producers a refusal names."""
    return [t for t in needed if any(t in wf.upstream(s) for s in selected)]


def _refuse_without_store(wf: Workflow, needed: list[str], direct: list[str], select: Selection,
                          reuse: str | None) -> None:
    from flyte_lab.store import RunStore

    try:
        RunStore.from_env(str(flyte_home(create=False)), create=False).close()
    except NoStore:
        if reuse is not None:
            raise RunNotFound(f"--reuse {reuse}: no run `{reuse}`: there are no runs yet", run_id=reuse) from None
        # raises: nothing ever ran (no candidate, so no artifact is asked about)
        plan_reuse(wf, needed, direct, [], {}, present=lambda _entry: True, selection=select.describe())


def resume_run(run_id: str, cluster: str | None = None, workers: int | None = None, shared_fs: bool = False,
               on_change: OnChange | None = None, on_event: OnEvent | None = None,
               keep_cluster: bool = False) -> dict[str, Any]:
    """Finish a run: reuse every succeeded task whose cache key (code, setup, inputs) is unchanged, rerun
    the rest and everything downstream of it (fix-and-continue after an edit), keep the launch options.
    `keep_cluster`: as `run_notebook`'s (the run widget's Resume, in a kernel that keeps its local cluster)."""
    from flyte_lab.store.leases import driver_identity

    store, artifacts = _stores(flyte_home())
    record = store.run_record(run_id)
    run = store.get_run(run_id)
    run_id = run["run_id"]
    path = run["notebook"]
    if not Path(path).is_file():
        raise UserInputError(f"run `{run_id}`: its notebook {path} no longer exists")
    current_hash = hash_notebook(path)
    edited = bool(record.get("notebook_hash")) and record["notebook_hash"] != current_hash
    if run["status"] == RunStatus.SUCCEEDED and not edited:
        raise UserInputError(f"run `{run_id}` already succeeded and its notebook is unchanged; nothing to resume")
    wf, values = _validated(path, dict(run["params"]), stored=True)
    options = record.get("options", {})
    select = Selection.from_json(options.get("select"))
    if select.everything:
        expected = set(wf.tasks)
    else:  # a partial run keeps its selection: the same tasks run, the same ones stay reused
        selected, needed = _selected(wf, select, None, False)
        expected = set(selected) | set(needed)
    missing = sorted(set(run["tasks"]) ^ expected)
    if missing:
        raise UserInputError(f"run `{run_id}`: tasks {', '.join(missing)} were added or removed since the run "
                             "started; resume continues the same tasks, so start a new run instead")
    use_cache = bool(record.get("options", {}).get("use_cache", True))
    cluster = cluster or record.get("cluster") or "local"
    _check_cluster(cluster, wf)
    secrets, scrub = secret_env(wf)
    _check_artifact_root(cluster, shared_fs or bool(record.get("options", {}).get("shared_fs")))
    fence = store.claim_run(run_id, driver_identity(), lease_ttl())  # refuses while a live driver holds it
    if keep_cluster:
        _start_local_kernels(cluster, workers, wf, scrub, keep_cluster)
    refs = _input_refs(wf, values, artifacts)
    plan = plan_resume(wf, store.run_tasks(run_id), lambda t: store.get_outputs(run_id, t), refs, edited)
    if not select.everything:
        try:
            plan = _keep_selection(plan, run, options, lambda t: store.get_outputs(run_id, t))
        except SelectionRefused:
            store.release_run(run_id, fence)  # refused: the run is left for a later resume at once
            raise
    if on_event:
        for line in plan.describe():
            on_event(line)
    if edited:
        store.update_run_notebook(run_id, current_hash, graph_json(wf), fence)
    _close_orphan_attempts(store, run, fence)
    _drive(store, artifacts, wf, run_id, fence, refs, secrets, scrub, cluster, workers, use_cache, on_change,
           on_event, keep=keep_cluster, prior=plan.prior,
           prior_attempts={n: t["attempts"] for n, t in run["tasks"].items()}, prior_outputs=plan.outputs,
           tasks=list(run["tasks"]))
    return dict(store.get_run(run_id))


def _keep_selection(plan: ResumePlan, run: dict[str, Any], options: dict[str, Any],
                    outputs_of: Callable[[str], dict[str, dict[str, Any]]]) -> ResumePlan:
    """A partial run's resume: only its own tasks, and its reused ones stay reused. One whose code changed since
    is refused (no stale output silently), unless the run took its outputs with --allow-changed."""
    kept = ResumePlan()
    for task in run["tasks"]:
        why = plan.reasons.get(task, "")
        if run["tasks"][task]["status"] == TaskStatus.REUSED and why:
            if not options.get("allow_changed"):
                raise SelectionRefused(f"run `{run['run_id']}` reused task `{task}`, whose outputs are stale now "
                                       f"({why}); start a new run with --from {task}")
            kept.prior[task], kept.outputs[task], kept.reasons[task] = TaskStatus.REUSED, outputs_of(task), ""
            continue
        kept.prior[task], kept.reasons[task] = plan.prior[task], why
        if task in plan.outputs:
            kept.outputs[task] = plan.outputs[task]
    return kept


def _close_orphan_attempts(store: Any, run: dict[str, Any], fence: int) -> None:
    for task, attempts in run.get("attempts_detail", {}).items():
        for attempt in attempts:
            if attempt["status"] == TaskStatus.RUNNING:  # its driver died mid-attempt
                store.finish_attempt(run["run_id"], task, attempt["number"], TaskStatus.FAILED, kind="infra",
                                     fence=fence, error=ErrorRecord.driver_lost().to_dict())


def cancel_run(run_id: str, store: RunStore | None = None, *,
               by: CancelSource = CancelSource.API) -> tuple[str, str]:
    """Ask a run to stop, from any process: (run_id, "requested" | "recorded" | its final status).

    `store`: the run store the caller keeps open (a server's shared one, a command's); else the environment's
    is opened for this call (`NoStore` when there is none). `by`: who is asking (the run records it).
    """
    with _store_or_env(store) as opened:
        return opened.request_cancel(run_id, by)


@contextlib.contextmanager
def _store_or_env(store: RunStore | None) -> Iterator[RunStore]:
    """The caller's store, left open; else the environment's, opened read-only (creating nothing) and closed."""
    if store is not None:
        yield store
        return
    from flyte_lab.store import RunStore

    with RunStore.from_env(create=False) as opened:
        yield opened


def _expected_env(store: Any, run_id: str, wf: Workflow, cluster: str) -> dict[str, Any] | None:
    """A remote cluster's attempts carry this process's versions: a worker not asked up front (every k8s worker,
    a tcp:// worker that joined later) checks itself (`env_check.attempt_mismatch`)."""
    if cluster in ("shared", "local"):
        return None
    from flyte_lab.engine.env_check import expected_env

    allow = bool((store.run_record(run_id).get("options") or {}).get("allow_env_mismatch"))
    return expected_env(wf, allow)


def _drive(store: Any, artifacts: Any, wf: Workflow, run_id: str, fence: int, refs: Any, secrets: Any,
           scrub: list[str], cluster: str, workers: int | None, use_cache: bool, on_change: OnChange | None,
           on_event: OnEvent | None, keep: bool = False, on_driven: OnDriven | None = None, **prior: Any) -> None:
    from flyte_lab.engine.clusters import connect
    from flyte_lab.engine.driver import RunDriver
    from flyte_lab.engine.worker.kernels import close_pools
    from flyte_lab.k8s.autoscaler import store_recorder

    _start_local_kernels(cluster, workers, wf, scrub, keep)  # already started by a new run; a resumed one starts here
    driving = False
    try:
        on_scale = store_recorder(store, run_id, fence)  # k8s worker groups' scale events, into the run
        with connect(cluster, workers, wf.kernel_name, wf=wf, on_scale=on_scale, keep=keep) as client:
            driving = True
            driver = RunDriver(store=store, artifacts=artifacts, wf=wf, run_id=run_id, client=client, fence=fence,
                               input_refs=refs, secrets=secrets, scrub=scrub, use_cache=use_cache,
                               lease_ttl_s=lease_ttl(), on_change=on_change, on_event=on_event,
                               expected_env=_expected_env(store, run_id, wf, cluster), **prior)
            try:
                driver.run()
            finally:
                if on_driven is not None:
                    on_driven(driver.machine)
    except (Exception, KeyboardInterrupt) as exc:
        if not driving:  # the cluster never came up (bad address, Ctrl-C while starting): nothing ran
            status = RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                error = ErrorRecord.not_started(type(exc).__name__, message)
                store.set_run_status(run_id, status, error=error.to_dict(), fence=fence)
                store.release_run(run_id, fence)
        if isinstance(exc, FlyteLabError | KeyboardInterrupt):
            raise
        raise DriverError(f"run `{run_id}`: the cluster failed ({type(exc).__name__}: {exc})",
                          run_id=run_id) from exc
    finally:
        if cluster == "local" and not keep:
            close_pools()  # the local workers were threads of this process: leave no kernel behind


def get_run(run_id: str, store: RunStore | None = None) -> dict[str, Any]:
    """The `show --json` record of a run; `store` as for `cancel_run`."""
    with _store_or_env(store) as opened:
        return dict(opened.get_run(run_id))


__all__ = ["ResumePlan", "cancel_run", "get_run", "resume_run", "run_notebook"]
