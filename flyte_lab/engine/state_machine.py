"""The run state machine: events in, instructions out, no I/O.

Modelled on distributed's `worker_state_machine`: the driver turns what Dask,
the cache and the user tell it into `Event`s, calls `RunStateMachine.handle`,
and carries out the `Instruction`s it gets back (persisting `MarkTask` before
acting on `Submit`). All decisions about readiness, retries, skipping and the
end of a run live here, so they are tested with plain asserts and hypothesis
instead of a cluster.

Delivery may be at-least-once: an event for an unknown task, for an attempt
that is not the current one, or that no longer applies (a second completion
from a restarted worker) is ignored and returns `[]`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cached", "skipped"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FailureKind = Literal["user", "infra", "timeout"]

DONE: frozenset[str] = frozenset({"succeeded", "cached"})
TERMINAL: frozenset[str] = frozenset({"succeeded", "cached", "failed", "skipped"})
CANCELLED_ERROR: dict[str, Any] = {"type": "Cancelled", "message": "run cancelled"}


@dataclass(frozen=True)
class TaskPlan:
    """What the state machine needs to know about one task of the graph."""

    name: str
    upstream: tuple[str, ...] = ()
    retries: int = 0  # user-error retries the task allows (`--retries`)
    map_size: int | None = None  # used by the driver, not by the state machine
    cache: bool = False  # ask the driver for a cache lookup before the first submit


# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    pass


@dataclass(frozen=True)
class TaskCacheHit:
    task: str


@dataclass(frozen=True)
class CacheMiss:
    task: str


@dataclass(frozen=True)
class TaskStarted:
    task: str
    attempt: int


@dataclass(frozen=True)
class TaskSucceeded:
    task: str
    attempt: int


@dataclass(frozen=True)
class TaskFailed:
    task: str
    attempt: int
    kind: FailureKind
    error: dict[str, Any]


@dataclass(frozen=True)
class RunCancelled:
    pass


Event: TypeAlias = RunStarted | TaskCacheHit | CacheMiss | TaskStarted | TaskSucceeded | TaskFailed | RunCancelled

# --- instructions -------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    task: str
    attempt: int  # 1-based, unique per task within a run


@dataclass(frozen=True)
class CheckCache:
    task: str


@dataclass(frozen=True)
class MarkTask:
    task: str
    status: TaskStatus
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class FinishRun:
    status: RunStatus


Instruction: TypeAlias = Submit | CheckCache | MarkTask | FinishRun


class RunStateMachine:
    """The state of one run; `handle` is the only way to change it."""

    def __init__(
        self,
        plans: list[TaskPlan],
        infra_retries: int = 3,
        prior: dict[str, str] | None = None,
        *,
        prior_attempts: dict[str, int] | None = None,
    ) -> None:
        # `prior_attempts` lets a resumed run number its attempts after the ones
        # already recorded, so attempt rows never collide; retry budgets restart.
        self._plans: dict[str, TaskPlan] = {}
        for plan in plans:
            if plan.name in self._plans:
                raise ValueError(f"task {plan.name!r} is planned twice")
            self._plans[plan.name] = plan
        self._dependants: dict[str, list[str]] = {name: [] for name in self._plans}
        for plan in plans:
            for up in plan.upstream:
                if up not in self._plans:
                    raise ValueError(f"task {plan.name!r} depends on unknown task {up!r}")
                self._dependants[up].append(plan.name)
        _check_acyclic(self._plans, self._dependants)
        if infra_retries < 0:
            raise ValueError("infra_retries must be >= 0")

        self._infra_retries = infra_retries
        prior = prior or {}
        prior_attempts = prior_attempts or {}
        self._prior = prior
        self._status: dict[str, str] = {
            name: (prior[name] if prior.get(name) in DONE else "queued") for name in self._plans
        }
        self._attempt: dict[str, int] = {name: prior_attempts.get(name, 0) for name in self._plans}
        self._user_failures: dict[str, int] = dict.fromkeys(self._plans, 0)
        self._infra_failures: dict[str, int] = dict.fromkeys(self._plans, 0)
        self._cache_checked: set[str] = set()
        self._awaiting_cache: set[str] = set()
        self._in_flight: set[str] = set()  # submitted, current attempt not yet finished
        self._run_status: RunStatus = "queued"

    # --- read-only views ------------------------------------------------------

    @property
    def task_status(self) -> dict[str, str]:
        return dict(self._status)

    @property
    def attempts(self) -> dict[str, int]:
        """The number of the latest attempt submitted per task (0: never submitted)."""
        return dict(self._attempt)

    @property
    def run_status(self) -> RunStatus:
        return self._run_status

    @property
    def done(self) -> bool:
        return self._run_status in ("succeeded", "failed", "cancelled")

    # --- transitions ------------------------------------------------------------

    def handle(self, event: Event) -> list[Instruction]:
        if self.done:
            return []  # a finished run is immutable; late events are noise
        if isinstance(event, RunStarted):
            return self._on_run_started()
        if isinstance(event, RunCancelled):
            return self._on_cancelled()
        if self._run_status != "running":
            return []  # nothing was dispatched yet, so no task event can be current
        if isinstance(event, TaskCacheHit | CacheMiss):
            if event.task not in self._awaiting_cache:
                return []
            self._awaiting_cache.discard(event.task)
            if isinstance(event, CacheMiss):
                return [self._submit(event.task)]
            return self._on_done(event.task, "cached")
        if isinstance(event, TaskStarted | TaskSucceeded | TaskFailed):
            if not self._is_current(event.task, event.attempt):
                return []
            if isinstance(event, TaskStarted):
                if self._status[event.task] == "running":
                    return []  # duplicate start
                self._status[event.task] = "running"
                return [MarkTask(event.task, "running")]
            # A completion without its start (lost or reordered start event) is
            # still accepted: the attempt is current and in flight.
            self._in_flight.discard(event.task)
            if isinstance(event, TaskSucceeded):
                return self._on_done(event.task, "succeeded")
            return self._on_failed(event)
        return []

    def _is_current(self, task: str, attempt: int) -> bool:
        return task in self._in_flight and attempt == self._attempt[task]

    def _on_run_started(self) -> list[Instruction]:
        if self._run_status != "queued":
            return []
        self._run_status = "running"
        out: list[Instruction] = []
        # Tasks rerun on resume are persisted as queued again, so the store stops
        # showing the status of the previous attempt.
        for name in self._plans:
            before = self._prior.get(name)
            if before is not None and before not in DONE and before != "queued":
                out.append(MarkTask(name, "queued"))
        out += self._dispatch(name for name in self._plans if self._is_ready(name))
        return out + self._maybe_finish()

    def _on_done(self, task: str, status: TaskStatus) -> list[Instruction]:
        self._status[task] = status
        out: list[Instruction] = [MarkTask(task, status)]
        out += self._dispatch(d for d in self._dependants[task] if self._is_ready(d))
        return out + self._maybe_finish()

    def _on_failed(self, event: TaskFailed) -> list[Instruction]:
        task, plan = event.task, self._plans[event.task]
        # Who is at fault decides the budget: a user's error (or timeout) only
        # with `--retries`, an infrastructure error always, up to infra_retries.
        if event.kind == "infra":
            self._infra_failures[task] += 1
            retry = self._infra_failures[task] <= self._infra_retries
        else:
            self._user_failures[task] += 1
            retry = self._user_failures[task] <= plan.retries
        if retry:
            self._status[task] = "queued"
            return [MarkTask(task, "queued"), self._submit(task)]
        self._status[task] = "failed"
        out: list[Instruction] = [MarkTask(task, "failed", event.error)]
        for dependant in self._transitive_dependants(task):
            if self._status[dependant] not in TERMINAL:
                self._status[dependant] = "skipped"
                out.append(MarkTask(dependant, "skipped"))
        return out + self._maybe_finish()

    def _on_cancelled(self) -> list[Instruction]:
        out: list[Instruction] = []
        for name, status in self._status.items():
            if status == "running":
                self._status[name] = "failed"
                out.append(MarkTask(name, "failed", dict(CANCELLED_ERROR)))
            elif status == "queued":
                self._status[name] = "skipped"
                out.append(MarkTask(name, "skipped"))
        self._in_flight.clear()
        self._awaiting_cache.clear()
        self._run_status = "cancelled"
        return [*out, FinishRun("cancelled")]

    # --- helpers ------------------------------------------------------------------

    def _is_ready(self, task: str) -> bool:
        return (
            self._status[task] == "queued"
            and task not in self._in_flight
            and task not in self._awaiting_cache
            and all(self._status[up] in DONE for up in self._plans[task].upstream)
        )

    def _dispatch(self, ready: Iterable[str]) -> list[Instruction]:
        out: list[Instruction] = []
        for task in ready:
            if self._plans[task].cache and task not in self._cache_checked:
                # Ask once: a miss then a failed attempt retries without asking again.
                self._cache_checked.add(task)
                self._awaiting_cache.add(task)
                out.append(CheckCache(task))
            else:
                out.append(self._submit(task))
        return out

    def _submit(self, task: str) -> Submit:
        self._attempt[task] += 1
        self._in_flight.add(task)
        return Submit(task, self._attempt[task])

    def _transitive_dependants(self, task: str) -> list[str]:
        seen: set[str] = set()
        queue = deque(self._dependants[task])
        while queue:
            name = queue.popleft()
            if name not in seen:
                seen.add(name)
                queue.extend(self._dependants[name])
        return [name for name in self._plans if name in seen]  # plan order: stable output

    def _maybe_finish(self) -> list[Instruction]:
        if any(status not in TERMINAL for status in self._status.values()):
            return []
        failed = any(status == "failed" for status in self._status.values())
        self._run_status = "failed" if failed else "succeeded"
        return [FinishRun(self._run_status)]


def _check_acyclic(plans: dict[str, TaskPlan], dependants: dict[str, list[str]]) -> None:
    # A cycle would leave its tasks queued forever and the run would never finish.
    indegree = {name: len(set(plan.upstream)) for name, plan in plans.items()}
    queue = deque(name for name, n in indegree.items() if n == 0)
    seen = 0
    while queue:
        name = queue.popleft()
        seen += 1
        for dependant in set(dependants[name]):
            indegree[dependant] -= 1
            if indegree[dependant] == 0:
                queue.append(dependant)
    if seen != len(plans):
        stuck = sorted(name for name, n in indegree.items() if n > 0)
        raise ValueError(f"the plan has a dependency cycle through {', '.join(stuck)}")
