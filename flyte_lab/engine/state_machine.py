"""The run state machine: events in, instructions out, no I/O.

Modelled on distributed's `worker_state_machine`: the driver turns what Dask,
the store, the clock and the user tell it into `Event`s, calls
`RunStateMachine.handle`, and carries out the `Instruction`s it gets back. Every
protocol of a run lives here, so each race is a plain test:

- readiness, retries (who is at fault decides the budget), skipping, the end;
- the task cache: a claim looks up the cache and takes the key's lock in one
  store transaction (`CheckCache`); a busy key makes the task wait and ask
  again on later ticks, so a waiter whose holder's lease lapsed takes over;
  held locks are leases renewed on ticks and released on every exit path;
- run ownership: the run's lease is renewed on ticks; a lost lease (another
  driver took the run over) abandons the run without writing anything;
- cancel (from `flyte-lab cancel`, Ctrl-C, the sidebar, the widget, the
  dashboard: the event says who) and a crash of the driver itself: running
  attempts are killed and their rows closed with the run's status, running
  tasks end `cancelled` (saying who cancelled) or `failed` (with the driver's
  error), locks released, the run ends `cancelled` (recording who) or `failed`,
  never `running` forever (nor any of its attempts); a cancel
  requested from another process is looked for on ticks every
  `CANCEL_CHECK_S` (a one-row read), so it takes effect within about that,
  not at the next lease renewal;
- a lost worker (Dask reran the attempt elsewhere) is recorded as such: the
  lost attempt is closed and the rerun is the task's next attempt.

Events carry their payload (a cache hit its outputs, a finished attempt its
`AttemptResult`), so every store write is an instruction that carries what it
writes: `StartAttempt`, `FinishAttempt`, `RecordCacheHit`, `MarkTask`,
`FinishRun`. The machine numbers the attempts (1-based per task, after the
ones a resumed run already recorded); the store records those numbers.

Every stimulus gets an id and, with the instructions it produced, enters a
bounded log (distributed's `stimulus_log`): `story(task)` tells a task's
history from the machine alone.

Delivery may be at-least-once: an event for an unknown task, for an attempt
that is not the current one, or that no longer applies (a second completion
from a restarted worker) is ignored and returns `[]`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import singledispatchmethod
from typing import Any, NamedTuple, TypeAlias

from flyte_lab.engine.attempt_records import AttemptFailed, AttemptResult, AttemptSucceeded, ErrorRecord
from flyte_lab.graph.topo_order import topological_order
from flyte_lab.statuses import RUN_TERMINAL, TASK_DONE, TASK_TERMINAL, CancelSource, RunStatus, TaskStatus

LEASE_TTL_S = 60.0  # a lapsed lease (its driver died) is taken over after this long
CACHE_RECHECK_S = 0.5  # how often a task waiting on another run's cache lock asks again
CANCEL_CHECK_S = 0.25  # how often a running run reads its cancel flag (one indexed row: cheap on any store)
STIMULUS_LOG_SIZE = 10_000  # stimuli kept for `story` (a 1000-task run with retries fits)


@dataclass(frozen=True)
class TaskPlan:
    """What the state machine needs to know about one task of the graph."""

    name: str
    upstream: tuple[str, ...] = ()
    retries: int = 0  # user-error retries the task allows (`--retries`)
    map_size: int | None = None  # used by the driver, not by the state machine
    cache: bool = False  # ask the driver for a cache claim before the first submit


# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    pass


@dataclass(frozen=True)
class TaskCacheHit:
    """The claim found a cache entry: the task is done without running; `outputs` are the entry's."""

    task: str
    outputs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class CacheLocked:
    """The claim found no entry and took the key's lock: this run computes it."""

    task: str


@dataclass(frozen=True)
class CacheBusy:
    """Another run holds the key's lock: wait for its result (or its lease to lapse)."""

    task: str
    holder: str = ""


@dataclass(frozen=True)
class Tick:
    """The clock (monotonic seconds): drives lease renewal and cache re-checks."""

    now: float


@dataclass(frozen=True)
class TaskStarted:
    task: str
    attempt: int
    at: float | None = None  # when its worker began it (epoch seconds, the worker's clock)


@dataclass(frozen=True)
class AttemptRestarted:
    """Dask started the current attempt a second time: the worker running it was lost."""

    task: str
    attempt: int
    worker: str | None = None
    # why the lost worker died, when its cluster can tell (a k8s pod OOMKilled: `TaskOutOfMemory`)
    failed: AttemptFailed | None = None


@dataclass(frozen=True)
class TaskSucceeded:
    task: str
    attempt: int
    result: AttemptSucceeded


@dataclass(frozen=True)
class TaskFailed:
    task: str
    attempt: int
    result: AttemptFailed


@dataclass(frozen=True)
class CancelRequested:
    """Someone asked the run to stop; `by` says who (recorded on the run and on the tasks it stops)."""

    by: CancelSource = CancelSource.API


@dataclass(frozen=True)
class LeaseLost:
    """Another driver holds the run now (a fenced write or a renewal was refused)."""

    holder: str = ""


@dataclass(frozen=True)
class DriverCrashed:
    """The driver hit an unexpected error: the run must end `failed`, with it recorded."""

    error: ErrorRecord


Event: TypeAlias = (RunStarted | TaskCacheHit | CacheLocked | CacheBusy | Tick | TaskStarted | AttemptRestarted
                    | TaskSucceeded | TaskFailed | CancelRequested | LeaseLost | DriverCrashed)

# --- instructions -------------------------------------------------------------


@dataclass(frozen=True)
class StartAttempt:
    """Record attempt `attempt` of `task` as running: the store's attempt row of that number."""

    task: str
    attempt: int  # 1-based, unique per task within a run: the one numbering (store rows, Dask keys)
    worker: str | None = None  # known when Dask reran it on another worker


@dataclass(frozen=True)
class Submit:
    """Hand attempt `attempt` (started just before) to Dask."""

    task: str
    attempt: int


@dataclass(frozen=True)
class FinishAttempt:
    """Record how attempt `attempt` ended. A success is the finishing transaction: outputs, attempt, task
    status and, with `cache`, the cache entry and the release of its lock, all committed together. A
    failure closes the attempt with who is at fault; a `MarkTask` follows for the task. An attempt still
    running when the run stopped (cancelled, or its driver failed) is closed with the run's status
    (`run_ended`), so no attempt row of a finished run says `running`."""

    task: str
    attempt: int
    result: AttemptResult
    cache: bool = False
    run_ended: RunStatus | None = None


@dataclass(frozen=True)
class RecordCacheHit:
    """The task is `cached`: its outputs are the cache entry's."""

    task: str
    outputs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class CheckCache:
    """Look the key up and, on a miss, take its lock: one store transaction."""

    task: str


@dataclass(frozen=True)
class MarkTask:
    """Persist a task's status (running, queued, failed, skipped: the done ones come with their payload)."""

    task: str
    status: TaskStatus
    error: ErrorRecord | None = None
    at: float | None = None  # a start's time on its worker's clock


@dataclass(frozen=True)
class Retrying:
    """Report only: attempt `failed_attempt` failed and the task runs again."""

    task: str
    failed_attempt: int  # the attempt number (as stored)
    next_try: int  # which try of this failure kind's budget starts now
    max_tries: int
    error: ErrorRecord


@dataclass(frozen=True)
class Rerun:
    """Report (and follow): Dask reran the task on `worker` after losing the one that ran it; its live Dask
    task is now attempt `attempt`."""

    task: str
    attempt: int
    worker: str | None


@dataclass(frozen=True)
class RenewLeases:
    """Renew the run's lease and the cache locks of these tasks."""

    cache_tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckCancel:
    """Read the run's cancel flag; if another process set it, answer with `CancelRequested`."""


@dataclass(frozen=True)
class ReleaseCacheLock:
    task: str


@dataclass(frozen=True)
class KillAttempts:
    """Stop these tasks' running attempts: cancel their Dask futures, kill their kernels."""

    tasks: tuple[str, ...]


@dataclass(frozen=True)
class FinishRun:
    status: RunStatus
    error: ErrorRecord | None = None
    cancelled_by: CancelSource | None = None  # a cancelled run's: who cancelled it


@dataclass(frozen=True)
class Abandon:
    """Stop driving without writing: another driver owns the run."""

    holder: str


Instruction: TypeAlias = (StartAttempt | Submit | FinishAttempt | RecordCacheHit | CheckCache | MarkTask | Retrying
                          | Rerun | RenewLeases | CheckCancel | ReleaseCacheLock | KillAttempts | FinishRun | Abandon)


class Stimulus(NamedTuple):
    """One entry of the stimulus log: an event, its id (its rank among the run's stimuli) and what it produced."""

    id: int
    event: Event
    instructions: tuple[Instruction, ...]


class RunStateMachine:
    """The state of one run; `handle` is the only way to change it."""

    def __init__(
        self,
        plans: list[TaskPlan],
        infra_retries: int = 3,
        prior: dict[str, str] | None = None,
        *,
        prior_attempts: dict[str, int] | None = None,
        lease_ttl_s: float = LEASE_TTL_S,
        cache_recheck_s: float = CACHE_RECHECK_S,
        cancel_check_s: float = CANCEL_CHECK_S,
        stimulus_log_size: int = STIMULUS_LOG_SIZE,
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
        _check_acyclic(self._plans)
        if infra_retries < 0:
            raise ValueError("infra_retries must be >= 0")

        self._infra_retries = infra_retries
        prior = prior or {}
        prior_attempts = prior_attempts or {}
        self._prior = prior
        self._status: dict[str, str] = {
            name: (prior[name] if prior.get(name) in TASK_DONE else TaskStatus.QUEUED) for name in self._plans
        }
        self._attempt: dict[str, int] = {name: prior_attempts.get(name, 0) for name in self._plans}
        self._user_failures: dict[str, int] = dict.fromkeys(self._plans, 0)
        self._infra_failures: dict[str, int] = dict.fromkeys(self._plans, 0)
        self._cache_checked: set[str] = set()
        self._awaiting_cache: set[str] = set()  # a claim is out, or the key is busy
        self._busy: dict[str, str] = {}  # task -> holder of the key's lock (waiting on it)
        self._locks: set[str] = set()  # tasks whose cache lock this run holds
        self._in_flight: set[str] = set()  # submitted, current attempt not yet finished
        self._run_status = RunStatus.QUEUED
        self._abandoned = False
        self._lease_every = lease_ttl_s / 3  # renew well before the lease lapses
        self._recheck_every = cache_recheck_s
        self._cancel_every = cancel_check_s
        self._last_renew: float | None = None
        self._last_recheck: float | None = None
        self._last_cancel_check: float | None = None
        self._stimuli = 0
        self._log: deque[Stimulus] = deque(maxlen=stimulus_log_size)

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
        return self._abandoned or self._run_status in RUN_TERMINAL

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    @property
    def held_locks(self) -> frozenset[str]:
        return frozenset(self._locks)

    @property
    def waiting_on_cache(self) -> dict[str, str]:
        """Tasks waiting for another run's result: task -> lock holder."""
        return dict(self._busy)

    @property
    def stimulus_log(self) -> tuple[Stimulus, ...]:
        """The latest stimuli, oldest first (at most `stimulus_log_size`; ticks that produced nothing are
        counted, not kept: one every quarter second would push a long run's history out)."""
        return tuple(self._log)

    def story(self, task: str) -> list[Stimulus]:
        """A task's history, in order: each logged stimulus about it or that produced an instruction for
        it, with only those instructions."""
        out = []
        for entry in self._log:
            mine = tuple(ins for ins in entry.instructions if _concerns(ins, task))
            if mine or _concerns(entry.event, task):
                out.append(entry._replace(instructions=mine))
        return out

    # --- transitions ------------------------------------------------------------

    def handle(self, event: Event) -> list[Instruction]:
        self._stimuli += 1
        out = [] if self.done else self._handle(event)  # a finished run is immutable; late events are noise
        if out or not isinstance(event, Tick):
            self._log.append(Stimulus(self._stimuli, event, tuple(out)))
        return out

    @singledispatchmethod
    def _handle(self, event: Event) -> list[Instruction]:
        raise TypeError(f"not a run event: {event!r}")

    @_handle.register(RunStarted)
    def _on_run_started(self, event: RunStarted) -> list[Instruction]:
        if self._run_status != RunStatus.QUEUED:
            return []
        self._run_status = RunStatus.RUNNING
        out: list[Instruction] = []
        # Tasks rerun on resume are persisted as queued again, so the store stops
        # showing the status of the previous attempt.
        for name in self._plans:
            before = self._prior.get(name)
            if before is not None and before not in TASK_DONE and before != TaskStatus.QUEUED:
                out.append(MarkTask(name, TaskStatus.QUEUED))
        out += self._dispatch(name for name in self._plans if self._is_ready(name))
        return out + self._maybe_finish()

    @_handle.register(CancelRequested)
    def _on_cancel(self, event: CancelRequested) -> list[Instruction]:
        error = ErrorRecord.run_cancelled(event.by)
        # the attempts it stops were nobody's failure: closed `cancelled`, with who cancelled and no place in code
        stopped = AttemptFailed(kind="cancelled", error=error)
        return self._stop(TaskStatus.CANCELLED, stopped, error, FinishRun(RunStatus.CANCELLED, cancelled_by=event.by))

    @_handle.register(DriverCrashed)
    def _on_crash(self, event: DriverCrashed) -> list[Instruction]:
        error = event.error
        stopped = AttemptFailed(kind="infra", error=ErrorRecord.infrastructure(error.type, error.message))
        return self._stop(TaskStatus.FAILED, stopped, error, FinishRun(RunStatus.FAILED, error))

    @_handle.register(LeaseLost)
    def _on_lease_lost(self, event: LeaseLost) -> list[Instruction]:
        self._abandoned = True
        running = tuple(self._running_tasks())
        self._in_flight.clear()
        return [KillAttempts(running), Abandon(event.holder)]

    @_handle.register(Tick)
    def _on_tick(self, event: Tick) -> list[Instruction]:
        if self._run_status != RunStatus.RUNNING:
            return []
        now = event.now
        out: list[Instruction] = []
        if self._last_renew is None or now - self._last_renew >= self._lease_every:
            self._last_renew = self._last_cancel_check = now  # a renewal reads the cancel flag too
            out.append(RenewLeases(tuple(name for name in self._plans if name in self._locks)))
        elif self._last_cancel_check is None or now - self._last_cancel_check >= self._cancel_every:
            self._last_cancel_check = now
            out.append(CheckCancel())
        if self._busy and (self._last_recheck is None or now - self._last_recheck >= self._recheck_every):
            self._last_recheck = now
            # ask again: the holder may have finished (a hit) or died (its lease lapsed: we take over)
            out += [CheckCache(task) for task in self._plans if task in self._busy]
        return out

    @_handle.register(TaskCacheHit)
    @_handle.register(CacheLocked)
    @_handle.register(CacheBusy)
    def _on_cache_answer(self, event: TaskCacheHit | CacheLocked | CacheBusy) -> list[Instruction]:
        task = event.task
        if self._run_status != RunStatus.RUNNING or task not in self._awaiting_cache:
            return []
        if isinstance(event, CacheBusy):
            self._busy[task] = event.holder
            return []
        self._awaiting_cache.discard(task)
        self._busy.pop(task, None)
        if isinstance(event, CacheLocked):
            self._locks.add(task)
            return self._start(task)
        self._status[task] = TaskStatus.CACHED
        return [RecordCacheHit(task, event.outputs), *self._unblock(task)]

    @_handle.register(AttemptRestarted)
    def _on_restarted(self, event: AttemptRestarted) -> list[Instruction]:
        task, lost = event.task, event.attempt
        if not self._is_current(task, lost):
            return []
        # Dask's own rerun, not a retry: no budget is spent, but the rerun is an attempt of its own
        self._attempt[task] = rerun = lost + 1
        failed = event.failed or AttemptFailed(kind="infra", error=ErrorRecord.worker_lost(task, event.worker))
        return [FinishAttempt(task, lost, failed), StartAttempt(task, rerun, event.worker),
                Rerun(task, rerun, event.worker)]

    @_handle.register(TaskStarted)
    def _on_task_started(self, event: TaskStarted) -> list[Instruction]:
        if not self._is_current(event.task, event.attempt) or self._status[event.task] == TaskStatus.RUNNING:
            return []  # stale, or a duplicate start
        self._status[event.task] = TaskStatus.RUNNING
        return [MarkTask(event.task, TaskStatus.RUNNING, at=event.at)]

    @_handle.register(TaskSucceeded)
    def _on_task_succeeded(self, event: TaskSucceeded) -> list[Instruction]:
        task = event.task
        # A completion without its start (lost or reordered start event) is
        # still accepted: the attempt is current and in flight.
        if not self._is_current(task, event.attempt):
            return []
        self._in_flight.discard(task)
        self._status[task] = TaskStatus.SUCCEEDED
        cache = task in self._locks
        self._locks.discard(task)  # the finishing transaction releases it
        return [FinishAttempt(task, event.attempt, event.result, cache), *self._unblock(task)]

    def _is_current(self, task: str, attempt: int) -> bool:
        return task in self._in_flight and attempt == self._attempt[task]

    def _unblock(self, task: str) -> list[Instruction]:
        """`task` is done: start what waited on it, or finish the run."""
        return self._dispatch(d for d in self._dependants[task] if self._is_ready(d)) + self._maybe_finish()

    @_handle.register(TaskFailed)
    def _on_failed(self, event: TaskFailed) -> list[Instruction]:
        task, plan, error = event.task, self._plans[event.task], event.result.error
        if not self._is_current(task, event.attempt):
            return []
        self._in_flight.discard(task)
        finished = FinishAttempt(task, event.attempt, event.result)
        # Who is at fault decides the budget: a user's error (or timeout) only
        # with `--retries`, an infrastructure error always, up to infra_retries.
        infra = event.result.fault == "infra"
        if infra:
            self._infra_failures[task] += 1
            retry = self._infra_failures[task] <= self._infra_retries
            budget = self._infra_retries
        else:
            self._user_failures[task] += 1
            retry = self._user_failures[task] <= plan.retries
            budget = plan.retries
        if retry:
            self._status[task] = TaskStatus.QUEUED
            failures = self._infra_failures[task] if infra else self._user_failures[task]
            # "(2/4)": the try about to start, of the most this kind of failure allows
            return [finished, MarkTask(task, TaskStatus.QUEUED),
                    Retrying(task, event.attempt, failures + 1, budget + 1, error), *self._start(task)]
        self._status[task] = TaskStatus.FAILED
        out: list[Instruction] = [finished, MarkTask(task, TaskStatus.FAILED, error)]
        if task in self._locks:
            self._locks.discard(task)
            out.append(ReleaseCacheLock(task))
        for dependant in self._transitive_dependants(task):
            if self._status[dependant] not in TASK_TERMINAL:
                self._status[dependant] = TaskStatus.SKIPPED
                out.append(MarkTask(dependant, TaskStatus.SKIPPED))
        return out + self._maybe_finish()

    def _stop(self, ended: TaskStatus, stopped: AttemptFailed, task_error: ErrorRecord,
              finish: FinishRun) -> list[Instruction]:
        """Cancel or crash: kill what runs, close its attempts with `stopped` and mark its tasks `ended` with
        `task_error`, skip what never started, release every lock, end the run."""
        running = self._running_tasks()
        out: list[Instruction] = [KillAttempts(tuple(running))] if running else []
        # the killed attempts' own answers are ignored from now on: their rows are closed here
        out += [FinishAttempt(name, self._attempt[name], stopped, run_ended=finish.status) for name in running]
        submitted = set(running)
        for name, state in self._status.items():
            if name in submitted:  # submitted (its start may not have been heard yet): it has an attempt, now closed
                self._status[name] = ended
                out.append(MarkTask(name, ended, task_error))
            elif state == TaskStatus.QUEUED:
                self._status[name] = TaskStatus.SKIPPED
                out.append(MarkTask(name, TaskStatus.SKIPPED))
        out += [ReleaseCacheLock(name) for name in self._plans if name in self._locks]
        self._locks.clear()
        self._in_flight.clear()
        self._awaiting_cache.clear()
        self._busy.clear()
        self._run_status = finish.status
        return [*out, finish]

    # --- helpers ------------------------------------------------------------------

    def _running_tasks(self) -> list[str]:
        return [name for name in self._plans if name in self._in_flight]

    def _is_ready(self, task: str) -> bool:
        return (
            self._status[task] == TaskStatus.QUEUED
            and task not in self._in_flight
            and task not in self._awaiting_cache
            and all(self._status[up] in TASK_DONE for up in self._plans[task].upstream)
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
                out += self._start(task)
        return out

    def _start(self, task: str) -> list[Instruction]:
        self._attempt[task] += 1
        self._in_flight.add(task)
        return [StartAttempt(task, self._attempt[task]), Submit(task, self._attempt[task])]

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
        if any(status not in TASK_TERMINAL for status in self._status.values()):
            return []
        failed = any(status == TaskStatus.FAILED for status in self._status.values())
        self._run_status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        return [FinishRun(self._run_status)]


def _concerns(item: Event | Instruction, task: str) -> bool:
    return (getattr(item, "task", None) == task or task in getattr(item, "tasks", ())
            or task in getattr(item, "cache_tasks", ()))


def _check_acyclic(plans: dict[str, TaskPlan]) -> None:
    # A cycle would leave its tasks queued forever and the run would never finish.
    ordered = topological_order(plans, ((up, name) for name, plan in plans.items() for up in set(plan.upstream)))
    if len(ordered) != len(plans):
        stuck = sorted(set(plans) - set(ordered))
        raise ValueError(f"the plan has a dependency cycle through {', '.join(stuck)}")
