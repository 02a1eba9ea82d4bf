"""The run state machine, driven by hand: events in, instructions out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyte_lab.engine.attempt_records import AttemptFailed, AttemptSucceeded, ErrorRecord
from flyte_lab.engine.state_machine import (
    Abandon,
    AttemptRestarted,
    CacheBusy,
    CacheLocked,
    CancelRequested,
    CheckCache,
    CheckCancel,
    DriverCrashed,
    FinishAttempt,
    FinishRun,
    Instruction,
    KillAttempts,
    LeaseLost,
    MarkTask,
    RecordCacheHit,
    ReleaseCacheLock,
    RenewLeases,
    Rerun,
    Retrying,
    RunStarted,
    RunStateMachine,
    StartAttempt,
    Submit,
    TaskCacheHit,
    TaskFailed,
    TaskPlan,
    TaskStarted,
    TaskSucceeded,
    Tick,
)
from flyte_lab.statuses import CancelSource

ERR = ErrorRecord.from_cell_error("ValueError", "boom", cell=1, line=2, traceback="")
LOST = ErrorRecord.worker_lost("a", "tcp://w2")
OK = AttemptSucceeded(outputs={"n": {"type": "int", "uri": "file:///n", "value": 1}}, output_notebook="file:///nb")
OUTS = {"n": {"type": "int", "uri": "file:///cached", "value": 2}}


def plan(name: str, *upstream: str, retries: int = 0, cache: bool = False) -> TaskPlan:
    return TaskPlan(name=name, upstream=tuple(upstream), retries=retries, cache=cache)


def failed(task: str, attempt: int, kind: Any, error: ErrorRecord) -> TaskFailed:
    return TaskFailed(task, attempt, AttemptFailed(kind=kind, error=error))


def start(task: str, attempt: int) -> list[Instruction]:
    """What starting an attempt is: its record, then its submission."""
    return [StartAttempt(task, attempt), Submit(task, attempt)]


def done(task: str, attempt: int, cache: bool = False) -> FinishAttempt:
    return FinishAttempt(task, attempt, OK, cache)


def fin(task: str, attempt: int, kind: Any = "user", error: ErrorRecord = ERR) -> FinishAttempt:
    return FinishAttempt(task, attempt, AttemptFailed(kind=kind, error=error))


def run_ok(sm: RunStateMachine, task: str, attempt: int = 1) -> list[Instruction]:
    """Start then succeed one attempt; returns what the success produced."""
    assert sm.handle(TaskStarted(task, attempt)) == [MarkTask(task, "running")]
    return sm.handle(TaskSucceeded(task, attempt, OK))


def run_fail(sm: RunStateMachine, task: str, attempt: int, kind: Any = "user", error: Any = None):
    sm.handle(TaskStarted(task, attempt))
    return sm.handle(failed(task, attempt, kind, error or ERR))


# --- scenarios ---------------------------------------------------------------------


def test_linear_chain_succeeds() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a"), plan("c", "b")])
    assert sm.run_status == "queued"
    assert sm.handle(RunStarted()) == [*start("a", 1)]
    assert sm.run_status == "running"
    assert sm.task_status == {"a": "queued", "b": "queued", "c": "queued"}
    assert run_ok(sm, "a") == [done("a", 1), *start("b", 1)]
    assert run_ok(sm, "b") == [done("b", 1), *start("c", 1)]
    assert run_ok(sm, "c") == [done("c", 1), FinishRun("succeeded")]
    assert sm.done and sm.run_status == "succeeded"
    assert sm.attempts == {"a": 1, "b": 1, "c": 1}


def test_diamond_waits_for_both_branches() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a"), plan("c", "a"), plan("d", "b", "c")])
    assert sm.handle(RunStarted()) == [*start("a", 1)]
    assert run_ok(sm, "a") == [done("a", 1), *start("b", 1), *start("c", 1)]
    assert run_ok(sm, "c") == [done("c", 1)]  # d still waits for b
    assert run_ok(sm, "b") == [done("b", 1), *start("d", 1)]
    assert run_ok(sm, "d") == [done("d", 1), FinishRun("succeeded")]


def test_empty_plan_finishes_at_once() -> None:
    sm = RunStateMachine([])
    assert sm.handle(RunStarted()) == [FinishRun("succeeded")]
    assert sm.done


def test_failure_skips_dependants_and_independent_branch_finishes() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a"), plan("c", "b"), plan("x"), plan("y", "x")])
    assert sm.handle(RunStarted()) == [*start("a", 1), *start("x", 1)]
    assert run_fail(sm, "a", 1) == [
        fin("a", 1),
        MarkTask("a", "failed", ERR),
        MarkTask("b", "skipped"),
        MarkTask("c", "skipped"),
    ]
    assert not sm.done
    assert run_ok(sm, "x") == [done("x", 1), *start("y", 1)]
    assert run_ok(sm, "y") == [done("y", 1), FinishRun("failed")]
    assert sm.task_status == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "x": "succeeded",
        "y": "succeeded",
    }
    assert sm.run_status == "failed"


def test_user_retry_then_success() -> None:
    sm = RunStateMachine([plan("a", retries=1)])
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1) == [fin("a", 1), MarkTask("a", "queued"), Retrying("a", 1, 2, 2, ERR), *start("a", 2)]
    assert sm.task_status["a"] == "queued"
    assert run_ok(sm, "a", 2) == [done("a", 2), FinishRun("succeeded")]
    assert sm.attempts == {"a": 2}


def test_user_retries_run_out() -> None:
    sm = RunStateMachine([plan("a", retries=2)])
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1)[-1] == Submit("a", 2)
    assert run_fail(sm, "a", 2)[-1] == Submit("a", 3)
    assert run_fail(sm, "a", 3) == [fin("a", 3), MarkTask("a", "failed", ERR), FinishRun("failed")]
    assert sm.attempts == {"a": 3}


def test_no_retries_fails_at_once() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a")])
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1) == [
        fin("a", 1),
        MarkTask("a", "failed", ERR),
        MarkTask("b", "skipped"),
        FinishRun("failed"),
    ]
    assert sm.attempts == {"a": 1, "b": 0}


def test_infra_error_retried_three_times_then_fails() -> None:
    sm = RunStateMachine([plan("a")])  # no user retries: infra retries do not need them
    sm.handle(RunStarted())
    for attempt in (1, 2, 3):
        assert run_fail(sm, "a", attempt, "infra", LOST) == [
            fin("a", attempt, "infra", LOST),
            MarkTask("a", "queued"),
            Retrying("a", attempt, attempt + 1, 4, LOST),
            *start("a", attempt + 1),
        ]
    assert run_fail(sm, "a", 4, "infra", LOST) == [fin("a", 4, "infra", LOST), MarkTask("a", "failed", LOST),
                                                   FinishRun("failed")]
    assert sm.attempts == {"a": 4}


def test_infra_retries_is_configurable() -> None:
    sm = RunStateMachine([plan("a", retries=5)], infra_retries=0)
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1, "infra", LOST) == [fin("a", 1, "infra", LOST), MarkTask("a", "failed", LOST),
                                                   FinishRun("failed")]


def test_infra_and_user_counters_are_independent() -> None:
    sm = RunStateMachine([plan("a", retries=1)], infra_retries=1)
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1, "infra", LOST)[-1] == Submit("a", 2)  # infra 1/1
    assert run_fail(sm, "a", 2, "user")[-1] == Submit("a", 3)  # user 1/1
    # Both budgets are now spent; each kind fails on its own next error.
    assert run_fail(sm, "a", 3, "user") == [fin("a", 3), MarkTask("a", "failed", ERR), FinishRun("failed")]

    sm = RunStateMachine([plan("a", retries=1)], infra_retries=1)
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1, "user")[-1] == Submit("a", 2)
    assert run_fail(sm, "a", 2, "infra", LOST)[-1] == Submit("a", 3)
    assert run_fail(sm, "a", 3, "infra", LOST) == [fin("a", 3, "infra", LOST), MarkTask("a", "failed", LOST),
                                                   FinishRun("failed")]


def test_timeout_counts_as_user_error() -> None:
    timeout = ErrorRecord.timeout("a", 600, cell=1)
    sm = RunStateMachine([plan("a")])
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1, "timeout", timeout) == [
        fin("a", 1, "timeout", timeout),
        MarkTask("a", "failed", timeout),
        FinishRun("failed"),
    ]

    sm = RunStateMachine([plan("a", retries=1)])
    sm.handle(RunStarted())
    assert run_fail(sm, "a", 1, "timeout", timeout)[-1] == Submit("a", 2)
    assert run_fail(sm, "a", 2, "user") == [fin("a", 2), MarkTask("a", "failed", ERR), FinishRun("failed")]


def test_cache_hit_skips_submit_and_unblocks_downstream() -> None:
    sm = RunStateMachine([plan("a", cache=True), plan("b", "a")])
    assert sm.handle(RunStarted()) == [CheckCache("a")]
    assert sm.handle(TaskCacheHit("a", OUTS)) == [RecordCacheHit("a", OUTS), *start("b", 1)]
    assert sm.attempts["a"] == 0
    assert run_ok(sm, "b") == [done("b", 1), FinishRun("succeeded")]
    assert sm.task_status == {"a": "cached", "b": "succeeded"}
    assert sm.run_status == "succeeded"


def test_cache_miss_submits_and_retries_do_not_ask_again() -> None:
    sm = RunStateMachine([plan("a", retries=1, cache=True)])
    assert sm.handle(RunStarted()) == [CheckCache("a")]
    assert sm.handle(TaskStarted("a", 1)) == []  # not submitted yet
    assert sm.handle(CacheLocked("a")) == [*start("a", 1)]
    assert sm.handle(CacheLocked("a")) == []  # answered once already
    assert run_fail(sm, "a", 1) == [fin("a", 1), MarkTask("a", "queued"), Retrying("a", 1, 2, 2, ERR), *start("a", 2)]
    # the finishing transaction writes the cache entry and releases the lock it holds
    assert run_ok(sm, "a", 2) == [done("a", 2, cache=True), FinishRun("succeeded")]
    assert sm.held_locks == frozenset()


def test_cache_answer_for_a_task_never_asked_is_ignored() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a", cache=True)])
    sm.handle(RunStarted())
    assert sm.handle(TaskCacheHit("b", OUTS)) == []
    assert sm.handle(TaskCacheHit("a", OUTS)) == []
    assert sm.task_status == {"a": "queued", "b": "queued"}


def test_resume_keeps_done_tasks_and_reruns_the_rest() -> None:
    plans = [plan("a"), plan("b", "a"), plan("c", "b"), plan("d", "a")]
    prior = {"a": "succeeded", "b": "failed", "c": "skipped", "d": "cached"}
    sm = RunStateMachine(plans, prior=prior)
    assert sm.task_status == {"a": "succeeded", "b": "queued", "c": "queued", "d": "cached"}
    assert sm.handle(RunStarted()) == [MarkTask("b", "queued"), MarkTask("c", "queued"), *start("b", 1)]
    assert run_ok(sm, "b") == [done("b", 1), *start("c", 1)]
    assert run_ok(sm, "c") == [done("c", 1), FinishRun("succeeded")]
    assert sm.attempts == {"a": 0, "b": 1, "c": 1, "d": 0}


def test_resume_continues_attempt_numbers() -> None:
    sm = RunStateMachine([plan("a")], prior={"a": "running"}, prior_attempts={"a": 2})
    assert sm.handle(RunStarted()) == [MarkTask("a", "queued"), *start("a", 3)]
    assert sm.handle(TaskSucceeded("a", 2, OK)) == []  # the old driver's attempt is stale
    assert run_ok(sm, "a", 3) == [done("a", 3), FinishRun("succeeded")]


def test_resume_of_a_finished_run_finishes_at_once() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a")], prior={"a": "succeeded", "b": "cached"})
    assert sm.handle(RunStarted()) == [FinishRun("succeeded")]


def test_stale_duplicate_and_unknown_events_are_ignored() -> None:
    sm = RunStateMachine([plan("a", retries=1), plan("b", "a")])
    assert sm.handle(TaskStarted("a", 1)) == []  # before the run started
    sm.handle(RunStarted())
    assert sm.handle(RunStarted()) == []
    assert sm.handle(TaskStarted("nope", 1)) == []
    assert sm.handle(TaskStarted("b", 1)) == []  # never submitted
    assert sm.handle(TaskStarted("a", 2)) == []  # future attempt
    assert sm.handle(TaskStarted("a", 1)) == [MarkTask("a", "running")]
    assert sm.handle(TaskStarted("a", 1)) == []  # duplicate start
    assert sm.handle(failed("a", 1, "user", ERR)) == [
        fin("a", 1), MarkTask("a", "queued"), Retrying("a", 1, 2, 2, ERR), *start("a", 2)]
    assert sm.handle(failed("a", 1, "user", ERR)) == []  # duplicate failure
    assert sm.handle(TaskSucceeded("a", 1, OK)) == []  # late success of the old attempt
    assert sm.handle(TaskSucceeded("a", 2, OK)) == [done("a", 2), *start("b", 1)]
    assert sm.handle(TaskSucceeded("a", 2, OK)) == []  # duplicate completion
    assert sm.handle(failed("a", 2, "infra", LOST)) == []
    assert sm.handle(TaskSucceeded("b", 1, OK)) == [done("b", 1), FinishRun("succeeded")]
    # After FinishRun nothing moves.
    assert sm.handle(TaskSucceeded("b", 1, OK)) == []
    assert sm.handle(CancelRequested()) == []
    assert sm.run_status == "succeeded"


def test_completion_without_start_is_accepted() -> None:
    # A lost or reordered start event must not wedge the run.
    sm = RunStateMachine([plan("a")])
    sm.handle(RunStarted())
    assert sm.handle(TaskSucceeded("a", 1, OK)) == [done("a", 1), FinishRun("succeeded")]


def test_cancel_cancels_what_runs_and_skips_what_never_started() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a"), plan("x"), plan("y")])
    sm.handle(RunStarted())
    sm.handle(TaskStarted("a", 1))
    run_ok(sm, "x")
    # y was submitted but its start not heard yet: it has an attempt too, so both rows are closed, both tasks
    # `cancelled` (not `failed`: nobody's error), saying who cancelled, with no cell or line (nothing to debug)
    cancelled = ErrorRecord.run_cancelled(CancelSource.SIDEBAR)
    assert cancelled.to_dict() == {"type": "Cancelled", "message": "cancelled from the JupyterLab sidebar"}
    stopped = AttemptFailed(kind="cancelled", error=cancelled)
    assert sm.handle(CancelRequested(CancelSource.SIDEBAR)) == [
        KillAttempts(("a", "y")),
        FinishAttempt("a", 1, stopped, run_ended="cancelled"),
        FinishAttempt("y", 1, stopped, run_ended="cancelled"),
        MarkTask("a", "cancelled", cancelled),
        MarkTask("b", "skipped"),
        MarkTask("y", "cancelled", cancelled),
        FinishRun("cancelled", cancelled_by=CancelSource.SIDEBAR),
    ]
    assert sm.run_status == "cancelled" and sm.done
    assert sm.handle(TaskSucceeded("a", 1, OK)) == []
    assert sm.task_status == {"a": "cancelled", "b": "skipped", "x": "succeeded", "y": "cancelled"}


def test_cancel_before_start() -> None:
    sm = RunStateMachine([plan("a")])
    assert sm.handle(CancelRequested()) == [MarkTask("a", "skipped"), FinishRun("cancelled", cancelled_by="api")]
    assert sm.handle(RunStarted()) == []


@pytest.mark.parametrize(
    "plans",
    [
        [plan("a"), plan("a")],
        [plan("a", "missing")],
        [plan("a", "b"), plan("b", "a")],
        [plan("a", "a")],
    ],
    ids=["duplicate", "unknown-upstream", "cycle", "self-loop"],
)
def test_bad_plans_are_refused(plans: list[TaskPlan]) -> None:
    with pytest.raises(ValueError):
        RunStateMachine(plans)


# --- properties ---------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[TaskPlan]:
    n = draw(st.integers(min_value=1, max_value=8))
    plans = []
    for i in range(n):
        upstream = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        plans.append(
            TaskPlan(
                name=f"t{i}",
                upstream=tuple(f"t{j}" for j in sorted(upstream)),
                retries=draw(st.integers(min_value=0, max_value=2)),
                cache=draw(st.booleans()),
            )
        )
    # Plan order need not be topological.
    return draw(st.permutations(plans))


def descendants(plans: list[TaskPlan], roots: set[str]) -> set[str]:
    dependants: dict[str, set[str]] = {p.name: set() for p in plans}
    for p in plans:
        for up in p.upstream:
            dependants[up].add(p.name)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        for d in dependants[stack.pop()]:
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


class Driver:
    """A fake driver: carries out instructions and checks every invariant on the way."""

    def __init__(self, sm: RunStateMachine, plans: list[TaskPlan]) -> None:
        self.sm = sm
        self.plans = {p.name: p for p in plans}
        self.cache_pending: list[str] = []
        self.attempts_pending: dict[str, tuple[int, bool]] = {}  # task -> (attempt, started)
        self.delivered: list[Any] = []
        self.marked: dict[str, str] = {}
        self.finishes: list[FinishRun] = []
        self.submitted: list[Submit] = []
        self.started: list[StartAttempt] = []
        self.failures: dict[str, list[str]] = {}  # task -> failure kinds, in order
        self.open_attempts: set[tuple[str, int]] = set()  # attempt rows recorded and not yet closed

    def send(self, event: Any) -> list[Instruction]:
        out = self.sm.handle(event)
        self.delivered.append(event)
        for instr in out:
            assert not self.finishes, "an instruction after FinishRun"
            if isinstance(instr, StartAttempt):
                assert instr.attempt == self.sm.attempts[instr.task]
                self.started.append(instr)
                self.open_attempts.add((instr.task, instr.attempt))
            elif isinstance(instr, Submit):
                assert self.started[-1] == StartAttempt(instr.task, instr.attempt)  # recorded before it is sent
                status = self.sm.task_status
                assert all(status[up] in ("succeeded", "cached") for up in self.plans[instr.task].upstream)
                assert instr.attempt == self.sm.attempts[instr.task]
                assert instr.task not in self.attempts_pending and instr.task not in self.cache_pending
                self.submitted.append(instr)
                self.attempts_pending[instr.task] = (instr.attempt, False)
            elif isinstance(instr, CheckCache):
                assert self.plans[instr.task].cache
                assert instr.task not in self.cache_pending
                self.cache_pending.append(instr.task)
            elif isinstance(instr, MarkTask | RecordCacheHit | FinishAttempt):
                if isinstance(instr, FinishAttempt):
                    assert instr.attempt <= self.sm.attempts[instr.task]
                    self.open_attempts.discard((instr.task, instr.attempt))
                    if isinstance(instr.result, AttemptFailed):
                        continue  # a MarkTask says what becomes of the task
                    status = "succeeded"
                else:
                    status = "cached" if isinstance(instr, RecordCacheHit) else instr.status
                self.marked[instr.task] = status
                assert self.sm.task_status[instr.task] == status
                if status in ("failed", "skipped", "succeeded", "cached", "cancelled"):
                    self.attempts_pending.pop(instr.task, None)
                    if instr.task in self.cache_pending:
                        self.cache_pending.remove(instr.task)
            elif isinstance(instr, KillAttempts):
                for task in instr.tasks:
                    self.attempts_pending.pop(task, None)
            elif isinstance(instr, ReleaseCacheLock | Retrying | RenewLeases | CheckCancel):
                pass
            else:
                assert isinstance(instr, FinishRun)
                if isinstance(event, CancelRequested | DriverCrashed):  # a stop closes every attempt row it leaves
                    assert not self.open_attempts, self.open_attempts
                self.finishes.append(instr)
        return out

    def idle(self) -> bool:
        return not self.cache_pending and not self.attempts_pending

    def step(self, draw: st.DrawFn) -> None:
        # Sometimes redeliver an old event first (at-least-once delivery): it must change nothing.
        if self.delivered and draw(st.integers(min_value=0, max_value=4)) == 0:
            old = draw(st.sampled_from(self.delivered))
            before = (self.sm.task_status, self.sm.attempts, self.sm.run_status)
            assert self.sm.handle(old) == []
            assert (self.sm.task_status, self.sm.attempts, self.sm.run_status) == before
        choices = [("cache", t) for t in self.cache_pending] + [("run", t) for t in self.attempts_pending]
        kind, task = draw(st.sampled_from(sorted(choices)))
        if kind == "cache":
            self.cache_pending.remove(task)
            self.send(TaskCacheHit(task, OUTS) if draw(st.booleans()) else CacheLocked(task))
            return
        attempt, started = self.attempts_pending[task]
        if not started:
            self.attempts_pending[task] = (attempt, True)
            self.send(TaskStarted(task, attempt))
            return
        del self.attempts_pending[task]
        outcome = draw(st.sampled_from(["ok", "ok", "user", "infra", "timeout"]))
        if outcome == "ok":
            self.send(TaskSucceeded(task, attempt, OK))
        else:
            self.failures.setdefault(task, []).append("infra" if outcome == "infra" else "user")
            self.send(failed(task, attempt, outcome, ErrorRecord.infrastructure(outcome, outcome)))


@settings(max_examples=300, deadline=None)
@given(plans=dags(), infra_retries=st.integers(min_value=0, max_value=2), data=st.data())
def test_random_runs_terminate_consistently(plans: list[TaskPlan], infra_retries: int, data: st.DataObject) -> None:
    sm = RunStateMachine(plans, infra_retries=infra_retries)
    driver = Driver(sm, plans)
    driver.send(RunStarted())
    # Each step moves one cache lookup or one attempt forward, so this bounds a terminating run.
    bound = sum(1 + 2 * (p.retries + infra_retries + 1) for p in plans)
    for _ in range(bound):
        if driver.idle():
            break
        driver.step(data.draw)
    assert driver.idle()

    assert len(driver.finishes) == 1
    assert sm.done
    status = sm.task_status
    assert all(s in ("succeeded", "cached", "failed", "skipped") for s in status.values())
    assert driver.marked == status  # every final status was persisted by an instruction
    failed = {t for t, s in status.items() if s == "failed"}
    assert {t for t, s in status.items() if s == "skipped"} == descendants(plans, failed)
    assert driver.finishes[0].status == sm.run_status == ("failed" if failed else "succeeded")
    for p in plans:
        # Each kind of failure spends its own budget, and a task fails exactly when one runs out.
        kinds = driver.failures.get(p.name, [])
        user, infra = kinds.count("user"), kinds.count("infra")
        if status[p.name] == "failed":
            last_infra = kinds[-1] == "infra"
            assert infra == infra_retries + 1 if last_infra else infra <= infra_retries
            assert user <= p.retries if last_infra else user == p.retries + 1
        else:
            assert user <= p.retries and infra <= infra_retries
        if status[p.name] in ("succeeded", "failed"):
            assert sm.attempts[p.name] == len(kinds) + (status[p.name] == "succeeded")
        if status[p.name] == "cached":
            assert sm.attempts[p.name] == 0
    # one numbering: each task's attempts are recorded and submitted as 1, 2, … in order
    for sent in (driver.started, driver.submitted):
        assert sorted((s.task, s.attempt) for s in sent) == sorted(
            (p.name, a) for p in plans for a in range(1, sm.attempts[p.name] + 1)
        )
    # Nothing moves once the run is finished.
    assert sm.handle(CancelRequested()) == []


@settings(max_examples=150, deadline=None)
@given(plans=dags(), data=st.data())
def test_cancel_at_any_point_finishes_once(plans: list[TaskPlan], data: st.DataObject) -> None:
    sm = RunStateMachine(plans)
    driver = Driver(sm, plans)
    driver.send(RunStarted())
    for _ in range(data.draw(st.integers(min_value=0, max_value=30))):
        if driver.idle():
            break
        driver.step(data.draw)
    before = sm.task_status
    submitted = {task for task in driver.attempts_pending}  # attempts out (started or not) before the cancel
    by = data.draw(st.sampled_from(list(CancelSource)))
    driver.send(CancelRequested(by))
    assert len(driver.finishes) == 1
    if before and all(s in ("succeeded", "cached", "failed", "skipped") for s in before.values()):
        assert driver.finishes[0].status in ("succeeded", "failed")  # finished before the cancel
    else:
        assert driver.finishes[0] == FinishRun("cancelled", cancelled_by=by)
        for task, s in before.items():
            # what had an attempt out is `cancelled`, what never got one `skipped`; nothing becomes `failed`
            expected = "cancelled" if task in submitted else {"queued": "skipped"}.get(s, s)
            assert sm.task_status[task] == expected
            assert driver.marked.get(task, s) == sm.task_status[task]


@settings(max_examples=150, deadline=None)
@given(
    plans=dags(),
    prior_statuses=st.lists(st.sampled_from(["succeeded", "cached", "failed", "skipped", "running", "queued"])),
    data=st.data(),
)
def test_resume_never_resubmits_done_tasks(
    plans: list[TaskPlan], prior_statuses: list[str], data: st.DataObject
) -> None:
    prior = {p.name: s for p, s in zip(plans, prior_statuses, strict=False)}
    sm = RunStateMachine(plans, prior=prior)
    driver = Driver(sm, plans)
    driver.send(RunStarted())
    for _ in range(200):
        if driver.idle():
            break
        driver.step(data.draw)
    assert driver.idle()
    assert len(driver.finishes) == 1
    kept = {t for t, s in prior.items() if s in ("succeeded", "cached")}
    assert not kept & {s.task for s in driver.submitted}
    assert not kept & set(driver.marked)
    for t in kept:
        assert sm.task_status[t] == prior[t]


# --- protocols: cache waiting, leases, cancel, lease loss, crashes ---------------------


def test_busy_cache_key_waits_and_asks_again_on_ticks() -> None:
    sm = RunStateMachine([plan("a", cache=True), plan("b", "a")], cache_recheck_s=0.5, lease_ttl_s=60)
    assert sm.handle(RunStarted()) == [CheckCache("a")]
    assert sm.handle(CacheBusy("a", "other-run")) == []
    assert sm.waiting_on_cache == {"a": "other-run"}
    assert sm.handle(Tick(100.0)) == [RenewLeases(()), CheckCache("a")]
    assert sm.handle(Tick(100.2)) == []  # too soon to ask again or renew
    assert sm.handle(CacheBusy("a", "other-run")) == []
    assert sm.handle(Tick(100.6)) == [CheckCancel(), CheckCache("a")]
    # the holder committed: the re-check is a hit, and the waiter never computes
    assert sm.handle(TaskCacheHit("a", OUTS)) == [RecordCacheHit("a", OUTS), *start("b", 1)]
    assert sm.waiting_on_cache == {} and sm.attempts["a"] == 0


def test_waiter_takes_over_a_lapsed_lock_and_renews_it() -> None:
    sm = RunStateMachine([plan("a", cache=True)], cache_recheck_s=0.5, lease_ttl_s=30)
    sm.handle(RunStarted())
    sm.handle(CacheBusy("a", "dead-run"))
    assert sm.handle(Tick(1.0)) == [RenewLeases(()), CheckCache("a")]
    assert sm.handle(CacheLocked("a")) == [*start("a", 1)]  # the store let us take over
    assert sm.held_locks == {"a"}
    assert sm.handle(Tick(5.0)) == [CheckCancel()]
    assert sm.handle(Tick(11.0)) == [RenewLeases(("a",))]  # every ttl/3 while it runs


def test_failed_task_releases_its_cache_lock() -> None:
    sm = RunStateMachine([plan("a", cache=True), plan("b", "a")])
    sm.handle(RunStarted())
    sm.handle(CacheLocked("a"))
    assert run_fail(sm, "a", 1) == [fin("a", 1), MarkTask("a", "failed", ERR), ReleaseCacheLock("a"),
                                    MarkTask("b", "skipped"), FinishRun("failed")]
    assert sm.held_locks == frozenset()


def test_cancel_kills_running_attempts_and_releases_locks() -> None:
    sm = RunStateMachine([plan("a", cache=True), plan("b", cache=True), plan("c", "a")])
    sm.handle(RunStarted())
    sm.handle(CacheLocked("a"))
    sm.handle(CacheBusy("b", "other"))
    sm.handle(TaskStarted("a", 1))
    out = sm.handle(CancelRequested(CancelSource.INTERRUPT))
    cancelled = ErrorRecord.run_cancelled(CancelSource.INTERRUPT)
    stopped = AttemptFailed(kind="cancelled", error=cancelled)
    assert out == [KillAttempts(("a",)), FinishAttempt("a", 1, stopped, run_ended="cancelled"),
                   MarkTask("a", "cancelled", cancelled), MarkTask("b", "skipped"),
                   MarkTask("c", "skipped"), ReleaseCacheLock("a"),
                   FinishRun("cancelled", cancelled_by=CancelSource.INTERRUPT)]
    assert sm.done and sm.held_locks == frozenset() and sm.waiting_on_cache == {}
    assert sm.handle(TaskSucceeded("a", 1, OK)) == []  # the killed attempt's late answer changes nothing


def test_a_cancel_from_another_process_is_read_on_ticks_not_only_at_lease_renewals() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a")], lease_ttl_s=60, cancel_check_s=0.25)
    sm.handle(RunStarted())
    sm.handle(TaskStarted("a", 1))
    assert sm.handle(Tick(10.0)) == [RenewLeases(())]  # a renewal reads the flag too
    assert sm.handle(Tick(10.1)) == []
    assert sm.handle(Tick(10.25)) == [CheckCancel()]
    assert sm.handle(Tick(10.3)) == []
    assert sm.handle(Tick(10.9)) == [CheckCancel()]
    assert sm.handle(Tick(30.0)) == [RenewLeases(())]  # every ttl/3
    # the flag was set: the driver answers the read with the cancel
    assert sm.handle(CancelRequested(CancelSource.COMMAND))[0] == KillAttempts(("a",))
    assert sm.run_status == "cancelled"
    assert sm.handle(Tick(31.0)) == []  # a finished run reads nothing more


@settings(max_examples=150, deadline=None)
@given(plans=dags(), check_s=st.sampled_from([0.1, 0.25, 0.5]), data=st.data())
def test_a_live_runs_cancel_flag_is_never_left_unread_for_cancel_check_s(
        plans: list[TaskPlan], check_s: float, data: st.DataObject) -> None:
    """Whatever happens between ticks, a tick finds the flag read less than `cancel_check_s` ago: with the
    driver ticking every TICK_S, a cancel request is seen within cancel_check_s + TICK_S."""
    sm = RunStateMachine(plans, cancel_check_s=check_s)
    driver = Driver(sm, plans)
    driver.send(RunStarted())
    now, last_read = 0.0, None
    for _ in range(80):
        if sm.done:
            break
        if driver.idle() or data.draw(st.booleans()):
            now += data.draw(st.floats(min_value=0.0, max_value=2.0))
            if any(isinstance(i, CheckCancel | RenewLeases) for i in driver.send(Tick(now))):
                last_read = now
            assert last_read is not None and now - last_read < check_s
        else:
            driver.step(data.draw)


def test_driver_crash_ends_the_run_failed_with_its_error() -> None:
    sm = RunStateMachine([plan("a", cache=True), plan("b", "a")])
    sm.handle(RunStarted())
    sm.handle(CacheLocked("a"))
    sm.handle(TaskStarted("a", 1))
    error = ErrorRecord.driver_failed("KeyError: 'x'", "Traceback ...")
    stopped = AttemptFailed(kind="infra", error=ErrorRecord.infrastructure("DriverError", error.message))
    assert sm.handle(DriverCrashed(error)) == [KillAttempts(("a",)), FinishAttempt("a", 1, stopped, run_ended="failed"),
                                               MarkTask("a", "failed", error),
                                               MarkTask("b", "skipped"), ReleaseCacheLock("a"),
                                               FinishRun("failed", error)]
    assert sm.run_status == "failed" and sm.done


def test_lost_lease_abandons_without_writing() -> None:
    sm = RunStateMachine([plan("a"), plan("b", "a")])
    sm.handle(RunStarted())
    sm.handle(TaskStarted("a", 1))
    out = sm.handle(LeaseLost("host:42:1"))
    assert out == [KillAttempts(("a",)), Abandon("host:42:1")]  # no MarkTask, no FinishRun: not ours now
    assert sm.done and sm.abandoned
    assert sm.handle(TaskSucceeded("a", 1, OK)) == [] and sm.handle(Tick(99.0)) == []


def test_worker_loss_closes_the_attempt_and_the_rerun_is_the_next_one() -> None:
    sm = RunStateMachine([plan("a")], infra_retries=0)
    sm.handle(RunStarted())
    sm.handle(TaskStarted("a", 1))
    assert sm.handle(AttemptRestarted("a", 1, "tcp://w2")) == [
        fin("a", 1, "infra", LOST), StartAttempt("a", 2, "tcp://w2"), Rerun("a", 2, "tcp://w2")]
    assert sm.attempts == {"a": 2} and sm.task_status == {"a": "running"}  # Dask's rerun: no budget spent
    assert sm.handle(AttemptRestarted("a", 1, "tcp://w2")) == []  # not the current attempt any more
    assert sm.handle(TaskSucceeded("a", 1, OK)) == []
    assert sm.handle(TaskSucceeded("a", 2, OK)) == [done("a", 2), FinishRun("succeeded")]


# --- the stimulus log ------------------------------------------------------------------------------------


def test_a_tasks_story_is_its_stimuli_and_their_instructions_in_order() -> None:
    sm = RunStateMachine([plan("a", retries=1), plan("b", "a")])
    sm.handle(RunStarted())
    assert sm.handle(Tick(1.0)) == [RenewLeases(())]
    assert sm.handle(Tick(1.1)) == []  # a quiet tick: counted, not kept
    run_fail(sm, "a", 1)
    run_ok(sm, "a", 2)
    assert [(e.id, e.event, e.instructions) for e in sm.story("a")] == [
        (1, RunStarted(), tuple(start("a", 1))),
        (4, TaskStarted("a", 1), (MarkTask("a", "running"),)),
        (5, failed("a", 1, "user", ERR), (fin("a", 1), MarkTask("a", "queued"), Retrying("a", 1, 2, 2, ERR),
                                          *start("a", 2))),
        (6, TaskStarted("a", 2), (MarkTask("a", "running"),)),
        (7, TaskSucceeded("a", 2, OK), (done("a", 2),)),
    ]
    # b's story starts with the success that unblocked it, and keeps only b's part of it
    assert [(e.id, e.instructions) for e in sm.story("b")] == [(7, tuple(start("b", 1)))]
    assert [e.id for e in sm.stimulus_log] == [1, 2, 4, 5, 6, 7]


@settings(max_examples=100, deadline=None)
@given(plans=dags(), size=st.integers(min_value=1, max_value=12), data=st.data())
def test_the_stimulus_log_stays_bounded(plans: list[TaskPlan], size: int, data: st.DataObject) -> None:
    sm = RunStateMachine(plans, stimulus_log_size=size)
    driver = Driver(sm, plans)
    driver.send(RunStarted())
    now = 0.0
    for _ in range(200):
        if sm.done:
            break
        if driver.idle() or data.draw(st.booleans()):
            now += data.draw(st.floats(min_value=0.0, max_value=1.0))
            driver.send(Tick(now))
        else:
            driver.step(data.draw)
        log = sm.stimulus_log
        assert len(log) <= size
        ids = [entry.id for entry in log]
        assert ids == sorted(set(ids))  # ids rise (quiet ticks are counted, not kept)
        for task in {p.name for p in plans}:
            told = [e.id for e in sm.story(task)]
            assert told == sorted(told) and set(told) <= set(ids)


def test_a_worker_lost_to_an_oomkilled_pod_closes_the_attempt_out_of_memory() -> None:
    sm = RunStateMachine([plan("a")], infra_retries=0)
    sm.handle(RunStarted())
    sm.handle(TaskStarted("a", 1))
    oom = AttemptFailed(kind="oom", error=ErrorRecord.pod_out_of_memory("a", 2**30, "g-worker-1", cell=3))
    out = sm.handle(AttemptRestarted("a", 1, "tcp://w2", failed=oom))
    assert out == [FinishAttempt("a", 1, oom), StartAttempt("a", 2, "tcp://w2"), Rerun("a", 2, "tcp://w2")]
    assert oom.error.type == "TaskOutOfMemory" and oom.error.message == (
        "task `a` ran out of memory: its worker pod g-worker-1 was OOMKilled, over its --mem of 1,024 MiB (the "
        "pod's memory limit) (raise --mem, or use less)")
