"""`flyte-lab scheduler`: plan the due fire times, claim them one at a time, launch each as a child.

Each pass: for every schedule, `plan_fires` records the due fire times (the
catch-up policy decides which) and moves the schedule's cursor; then the loop
claims launchable fire times (`claim_fire` applies `--max-active`) and starts one
child per claim (`run_launch`'s `fire` action, `scheduler/launch.py`; its log is
ours). A child that exits before its run exists hands its fire time back
(`pending`), so it is retried; a scheduler that dies
leaves its claims to the next scheduler, which sees the claimant is gone.
`--once` does one pass at `--now`, waits for its children (claiming queued fire
times as slots free up), and exits. Each fire time gets one line in the log
(`firing_log`): the child writes it once its run exists (or is refused), the loop
when the store skips it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flyte_lab.presentation.formats import format_fire_time
from flyte_lab.run_launch import spawn
from flyte_lab.scheduler import checks, claims, firing_log, timing

log = logging.getLogger("flyte_lab.scheduler")

# test hook: block (reading stdin) after claiming a fire time, so a test can kill the scheduler right there
HOLD_AFTER_CLAIM = "FLYTE_LAB_SCHEDULER_HOLD_AFTER_CLAIM"
IDLE_S = 5.0


def _aware(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def planner(now: datetime) -> Callable[[dict[str, Any]], tuple[list[datetime], datetime | None]]:
    """The store's `plan_fires` callback at `now`: which fire times are due, and the new cursor (naive UTC)."""

    def plan(schedule: dict[str, Any]) -> tuple[list[datetime], datetime | None]:
        when = checks.stored_when(schedule, now)  # InvalidSchedule: nothing planned, the cursor stays
        bound = schedule["max_catchup"] if schedule["catchup"] else 1
        fires = timing.latest_fires(when.cron, when.every_s, when.tz, when.start, _aware(schedule["cursor"]), now,
                                    bound + 1)
        if len(fires) > bound:
            policy = f"--max-catchup {bound}" if schedule["catchup"] else "catch-up off"
            log.info("schedule %s: missed fire times up to %s skipped (%s)", schedule["name"],
                     format_fire_time(fires[0], schedule["timezone"]), policy)
            fires = fires[1:]
        cursor = fires[-1].replace(tzinfo=None) if fires else None
        return [f.replace(tzinfo=None) for f in fires], cursor

    return plan


@dataclass
class _Child:
    schedule: str
    fire: datetime  # naive UTC, as stored
    proc: subprocess.Popen[bytes]


class Scheduler:
    """One scheduler process; any number may share a store."""

    def __init__(self, store: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = claims.this_owner()
        self.children: list[_Child] = []
        self.failures = 0
        self.stopping = threading.Event()
        self.reported: dict[str, str] = {}  # schedule -> why it is invalid, logged once per reason

    # -- one pass --------------------------------------------------------------------------

    def skip_invalid(self, name: str, exc: checks.InvalidSchedule) -> None:
        """Log a schedule the rules refuse, once per reason: it is skipped, the others fire."""
        if self.reported.get(name) != exc.message:
            self.reported[name] = exc.message
            log.error("schedule %s: skipped, its stored row is invalid: %s", name, exc.message)

    def plan(self, now: datetime) -> int:
        planned = 0
        for schedule in self.store.list_schedules():
            if schedule["paused"]:
                continue
            try:
                fires = self.store.plan_fires(schedule["name"], planner(now))
            except checks.InvalidSchedule as exc:
                self.skip_invalid(schedule["name"], exc)
                continue
            for fire in fires:
                log.debug("schedule %s: fire time %s is due", schedule["name"], fire.replace(tzinfo=UTC).isoformat())
            planned += len(fires)
        return planned

    def launch_claimable(self, now: datetime) -> int:
        """Claim and launch what the store lets us; `now` (the pass's time) says how late each fire time is."""

        def dropped(schedule: dict[str, Any], fire: datetime, outcome: str) -> None:
            log.info("%s", firing_log.line(schedule, fire, firing_log.why(fire, now), outcome))

        launched = 0
        while not self.stopping.is_set():
            claim = self.store.claim_fire(self.owner, claims.lease_s(), claims.owner_alive, claims.driver_alive,
                                          dropped)
            if claim is None:
                break
            name, fire = claim["schedule"]["name"], claim["fire_time"]
            shown = fire.replace(tzinfo=UTC).isoformat()
            try:  # planned before its row went bad: a launch would fail the same way each time
                checks.stored_when(claim["schedule"], self.clock())
            except checks.InvalidSchedule as exc:
                self.skip_invalid(name, exc)
                self.store.mark_fire(name, fire, "failed", reason=f"the schedule is invalid: {exc.message}")
                continue
            log.debug("schedule %s: claimed fire time %s (claim %d)", name, shown, claim["claims"])
            if os.environ.get(HOLD_AFTER_CLAIM):
                log.warning("holding the claim on %s %s until stdin closes (%s)", name, shown, HOLD_AFTER_CLAIM)
                sys.stdin.read()
            # in our session: a scheduler stopped with its group stops the launches it started
            why = firing_log.why(fire, now, claim["claims"])
            proc = spawn({"action": "fire", "schedule": name, "fire_time": shown, "why": why}, None,
                         own_session=False)
            self.children.append(_Child(name, fire, proc))
            launched += 1
        return launched

    def reap(self) -> int:
        """Collect finished children; a fire time whose child died before making its run goes back to pending."""
        done = [c for c in self.children if c.proc.poll() is not None]
        for child in done:
            self.children.remove(child)
            code = child.proc.returncode
            if code != 0:
                self.failures += 1
            # a no-op unless the fire is still claimed: the child marks it launched or failed itself
            self.store.mark_fire(child.schedule, child.fire, "pending",
                                 reason=f"its launcher exited with code {code} before the run started")
        return len(done)

    # -- modes -----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Fire what is due at `now`, wait for those runs (and queued fire times they free), exit code."""
        now = now or self.clock()
        self.plan(now)
        while True:
            self.launch_claimable(now)
            if not self.children:
                break
            self._wait_children()
            self.reap()
        return 0 if self.failures == 0 else 1

    def run_forever(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        log.info("scheduler %s started on %s", self.owner, self.store)
        while not self.stopping.is_set():
            now = self.clock()
            self.plan(now)
            self.launch_claimable(now)
            self.reap()
            self.stopping.wait(self._idle(now))
        log.info("scheduler stopping; waiting for %d run(s) it launched", len(self.children))
        while self.children:
            self._wait_children()
            self.reap()
        return 0

    def _idle(self, now: datetime) -> float:
        """Seconds to sleep: until the next fire time, at most IDLE_S, shorter while children run."""
        wait = IDLE_S if not self.children else 0.5
        for schedule in self.store.list_schedules():
            if schedule["paused"]:
                continue
            try:
                when = checks.stored_when(schedule, now)
            except checks.InvalidSchedule as exc:
                self.skip_invalid(schedule["name"], exc)
                continue
            nxt = timing.next_fire(when.cron, when.every_s, when.tz, when.start, _aware(schedule["cursor"]) or now)
            wait = min(wait, max((nxt - now) / timedelta(seconds=1), 0.05))
        return wait

    def _wait_children(self) -> None:
        while not any(c.proc.poll() is not None for c in self.children):
            time.sleep(0.2)
