"""Where a partial run's unselected tasks come from: the earlier run whose outputs of them are still valid.

A task's outputs in an earlier run are valid exactly when a `resume` of that run would reuse the task
(`resume_plan.plan_resume` with the notebook as it is now: everything upstream reused, the same cache key over
code, setup cells, cache version and inputs), so that is the one check made here, with one more: the outputs'
artifacts must still be in the artifact store (a run whose artifacts were deleted is passed over). Candidates come
newest first; the first that gives every needed task wins (one run, so tasks reading several of them read one
run's values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flyte_lab.engine.resume_plan import ResumePlan, plan_resume
from flyte_lab.errors import ArtifactError, SelectionRefused
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


Present = Callable[[Mapping[str, Any]], bool]  # a stored output entry -> its artifact is still in the store


@dataclass(frozen=True)
class Seen:
    """A candidate that did not fit: its plan, and (once everything else fitted) the outputs found gone."""

    cand: Candidate
    plan: ResumePlan
    gone: dict[str, list[str]]  # task -> its outputs whose artifacts are no longer in the store


def plan_reuse(wf: Workflow, needed: list[str], direct: list[str], candidates: Iterable[Candidate],
               input_refs: dict[tuple[str, str], dict[str, Any]], *, present: Present, selection: str,
               named: str | None = None, allow_changed: bool = False) -> dict[str, ReusedTask]:
    """The source of each needed task, or `SelectionRefused` naming the first producer none fits and why.

    `direct`: the needed tasks a selected task reads (named first); `present`: whether an output's artifact is
    still stored (`artifact_present`; asked only of a run that fits otherwise); `selection`: the options as
    typed, for the message; `named`: the run `--reuse` names (the only candidate).
    """
    if not needed:
        return {}
    seen: list[Seen] = []
    for cand in candidates:
        plan = plan_resume(wf, cand.tasks, cand.outputs_of, input_refs, edited=True)
        gone: dict[str, list[str]] = {}
        if all(_fits(cand, plan, t, allow_changed) for t in needed):
            gone = {t: names for t in needed if (names := [n for n, e in _outputs(cand, plan, t).items()
                                                           if not present(e)])}
            if not gone:
                return {t: _reused(cand, plan, t) for t in needed}
        seen.append(Seen(cand, plan, gone))
    raise SelectionRefused(_refusal(needed, direct, seen, selection, named, allow_changed))


def artifact_present(artifacts: Any) -> Present:
    """`present` over an `ArtifactStore`: the entry's artifact exists (a list: its manifest and every element,
    reading the manifest only, never a value); one this store cannot read (another root, a manifest that no
    longer matches its hash) counts as gone."""
    def present(entry: Mapping[str, Any]) -> bool:
        uri = str(entry.get("uri") or "")
        try:
            if not artifacts.exists(uri):
                return False
            elements = artifacts.manifest_elements(uri) if entry.get("codec") == "manifest" else []
            return all(artifacts.exists(e) for e in elements)
        except ArtifactError:
            return False
    return present


def _fits(cand: Candidate, plan: ResumePlan, task: str, allow_changed: bool) -> bool:
    if task not in cand.tasks:
        return False
    return not plan.reasons.get(task) or (allow_changed and cand.tasks[task]["status"] in TASK_DONE)


def _outputs(cand: Candidate, plan: ResumePlan, task: str) -> dict[str, dict[str, Any]]:
    return plan.outputs.get(task) or cand.outputs_of(task)


def _reused(cand: Candidate, plan: ResumePlan, task: str) -> ReusedTask:
    state = cand.tasks[task]
    origin = cand.reused.get(task) if state["status"] == TaskStatus.REUSED else None
    return ReusedTask(
        run_id=str(origin["run_id"]) if origin else cand.run_id,
        attempt=int(origin["attempt"]) if origin else int(state.get("attempts") or 0),
        outputs=_outputs(cand, plan, task),
        cache_key=state.get("cache_key"),
        output_notebook=state.get("output_notebook"),
        changed=bool(plan.reasons.get(task)) or bool(origin and origin.get("changed")),
    )


def _refusal(needed: list[str], direct: list[str], seen: list[Seen], selection: str,
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


def _why(task: str, seen: list[Seen], named: str | None, allow_changed: bool) -> str | None:
    """Why the newest run that has `task` cannot give it; None when it can."""
    newest = next((s for s in seen if task in s.cand.tasks), None)
    if newest is None:
        return f"run {named} has no task `{task}`" if named else "it never ran in an earlier run of this notebook"
    cand, plan = newest.cand, newest.plan
    status = cand.tasks[task]["status"]
    if status not in TASK_DONE:
        return f"it was {status} in run {cand.run_id}" + ("" if named else ", the newest that has it")
    reason = plan.reasons.get(task)
    if not reason or allow_changed:
        gone = newest.gone.get(task)
        if not gone:
            return None
        what = f"output {gone[0]} was" if len(gone) == 1 else f"outputs {', '.join(gone)} were"
        return (f"the artifact of its {what} deleted from the artifact store (run {cand.run_id}"
                + (")" if named else ", the newest that has it)"))
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
