"""Where a partial run's unselected tasks come from: the earlier run whose outputs of them are still valid.

A task's outputs in an earlier run are valid exactly when a `resume` of that run would reuse the task
(`resume_plan.plan_resume` with the notebook as it is now: everything upstream reused, the same cache key over
code, setup cells, cache version and inputs), so that is the one check made here. Candidates come newest first;
the first that gives every needed task wins (one run, so tasks reading several of them read one run's values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flyte_lab.engine.resume_plan import ResumePlan, plan_resume
from flyte_lab.errors import SelectionRefused
from flyte_lab.graph.model import Workflow
from flyte_lab.statuses import TASK_DONE, TaskStatus


@dataclass(frozen=True)
class Candidate:
    """An earlier run as the check needs it: its tasks' states, their outputs, and where its own reused tasks
    came from (so provenance names the run that computed a value, not one that reused it)."""

    run_id: str
    tasks: dict[str, dict[str, Any]]
    outputs_of: Callable[[str], dict[str, dict[str, Any]]]
    reused: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ReusedTask:
    run_id: str  # the run that computed the outputs
    attempt: int
    outputs: dict[str, dict[str, Any]]  # the stored entries: the same content-addressed artifacts
    cache_key: str | None
    output_notebook: str | None
    changed: bool  # taken by --allow-changed although its code, setup cells or inputs changed

    def provenance(self) -> dict[str, Any]:
        """What the run records and `show --json` serves as the task's `reused_from`."""
        return {"run_id": self.run_id, "attempt": self.attempt, "changed": self.changed}

    def row(self) -> dict[str, Any]:
        """What the run store writes for the task when it records the run."""
        return {"attempts": self.attempt, "cache_key": self.cache_key, "output_notebook": self.output_notebook,
                "outputs": self.outputs}


def plan_reuse(wf: Workflow, needed: list[str], direct: list[str], candidates: Iterable[Candidate],
               input_refs: dict[tuple[str, str], dict[str, Any]], *, selection: str, named: str | None = None,
               allow_changed: bool = False) -> dict[str, ReusedTask]:
    """The source of each needed task, or `SelectionRefused` naming the first producer none fits and why.

    `direct`: the needed tasks a selected task reads (named first); `selection`: the options as typed, for the
    message; `named`: the run `--reuse` names (the only candidate).
    """
    if not needed:
        return {}
    seen: list[tuple[Candidate, ResumePlan]] = []
    for cand in candidates:
        plan = plan_resume(wf, cand.tasks, cand.outputs_of, input_refs, edited=True)
        if all(_fits(cand, plan, t, allow_changed) for t in needed):
            return {t: _reused(cand, plan, t) for t in needed}
        seen.append((cand, plan))
    raise SelectionRefused(_refusal(needed, direct, seen, selection, named, allow_changed))


def _fits(cand: Candidate, plan: ResumePlan, task: str, allow_changed: bool) -> bool:
    if task not in cand.tasks:
        return False
    return not plan.reasons.get(task) or (allow_changed and cand.tasks[task]["status"] in TASK_DONE)


def _reused(cand: Candidate, plan: ResumePlan, task: str) -> ReusedTask:
    state = cand.tasks[task]
    origin = cand.reused.get(task) if state["status"] == TaskStatus.REUSED else None
    return ReusedTask(
        run_id=str(origin["run_id"]) if origin else cand.run_id,
        attempt=int(origin["attempt"]) if origin else int(state.get("attempts") or 0),
        outputs=plan.outputs.get(task) or cand.outputs_of(task),
        cache_key=state.get("cache_key"),
        output_notebook=state.get("output_notebook"),
        changed=bool(plan.reasons.get(task)) or bool(origin and origin.get("changed")),
    )


def _refusal(needed: list[str], direct: list[str], seen: list[tuple[Candidate, ResumePlan]], selection: str,
             named: str | None, allow_changed: bool) -> str:
    """One line: the producer the selection reads whose outputs no run gives, why, and the first stale task to
    include (`--from`)."""
    hint = "name a run with --reuse RUN_ID" if named is None else "name another run with --reuse"
    failing = [(t, why) for t in needed if (why := _why(t, seen, named, allow_changed)) is not None]
    if not failing:
        return (f"{selection}: no one earlier run has valid outputs of all of {', '.join(needed)}; "
                f"include them with --from {needed[0]} or {hint}")
    root = failing[0][0]
    task, why = next(((t, w) for t, w in failing if t in direct), failing[0])
    if named is not None and "changed" in why:
        hint += " (or add --allow-changed to take its outputs anyway)"
    return (f"{selection}: cannot take the outputs of task `{task}` from an earlier run: {why}; "
            f"include it with --from {root} or {hint}")


def _why(task: str, seen: list[tuple[Candidate, ResumePlan]], named: str | None, allow_changed: bool) -> str | None:
    """Why the newest run that has `task` cannot give it; None when it can."""
    newest = next(((c, p) for c, p in seen if task in c.tasks), None)
    if newest is None:
        return f"run {named} has no task `{task}`" if named else "it never ran in an earlier run of this notebook"
    cand, plan = newest
    status = cand.tasks[task]["status"]
    if status not in TASK_DONE:
        return f"it was {status} in run {cand.run_id}" + ("" if named else ", the newest that has it")
    reason = plan.reasons.get(task)
    if not reason or allow_changed:
        return None
    origin = cand.reused.get(task) if status == TaskStatus.REUSED else None
    where = origin["run_id"] if origin else cand.run_id  # the run that computed the stale output
    if reason.startswith("downstream of "):
        return f"it reads {reason.removeprefix('downstream of ')}, which changed since run {where}"
    return f"{reason} since run {where}"


def store_candidates(store: Any, notebook: str, reuse: str | None, page: int = 50) -> Iterable[Candidate]:
    """Earlier runs of `notebook` (its stored absolute path, which follows renames), newest first, read one at a
    time as the check asks; only the run `reuse` names when given (refused if it is another notebook's)."""
    if reuse is not None:
        record = store.run_record(reuse)  # an unknown id: RunNotFound, one line
        if record["notebook"] != notebook:
            raise SelectionRefused(f"--reuse {reuse}: run {record['run_id']} is of {record['notebook']}, "
                                   f"not of {notebook}")
        yield _candidate(store, record)
        return
    offset = 0
    while True:
        rows = store.list_runs(limit=page, offset=offset, notebook=notebook)
        for row in rows:
            yield _candidate(store, store.run_record(row["run_id"]))
        if len(rows) < page:
            return
        offset += page


def _candidate(store: Any, record: dict[str, Any]) -> Candidate:
    run_id = record["run_id"]
    return Candidate(run_id=run_id, tasks=store.run_tasks(run_id),
                     outputs_of=lambda task: store.get_outputs(run_id, task),
                     reused=dict(record.get("options", {}).get("reused") or {}))
