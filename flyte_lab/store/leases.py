"""Run ownership: one live driver per run, held as a lease with a fencing token.

A mixin of `RunStore`. `claim_run` hands out a new token (`runs.fence`) to a
driver when no other live driver holds the run; every write the driver makes
passes its token and is refused (`LeaseLostError`) once another driver has
claimed the run, so a stale driver can never overwrite its successor's rows.
A lease whose holder stopped renewing lapses after its TTL; a holder on this
host whose process is gone is treated as lapsed at once.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from flyte_lab.engine.attempt_records import ErrorRecord
from flyte_lab.errors import LeaseLostError, RunBusy
from flyte_lab.statuses import RUN_TERMINAL, CancelSource, RunStatus, TaskStatus
from flyte_lab.store.rows import dumps, iso, now_utc
from flyte_lab.store.schema import Attempt, CacheLock, Run, Task
from flyte_lab.store.store_part import StorePart


def driver_identity() -> str:
    """`host:pid:start-time`: names this process, and tells a reused pid from ours."""
    import psutil

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{int(psutil.Process(pid).create_time())}"


def holder_alive(holder: str) -> bool:
    """False only when the holder is certainly gone (same host, process ended or pid reused)."""
    import psutil

    host, _, rest = holder.partition(":")
    pid_text, _, created = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine: only its lease's expiry tells
    try:
        proc = psutil.Process(int(pid_text))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not created.isdigit() or int(proc.create_time()) == int(created)
    except psutil.NoSuchProcess:
        return False


def describe_holder(holder: str) -> str:
    host, _, rest = holder.partition(":")
    return f"pid {rest.partition(':')[0]} on host {host}"


class LeaseMixin(StorePart):
    """`claim_run`, `renew_run`, `release_run`, `request_cancel`, `cancel_requested` and the fence check."""

    def check_fence(self, conn: Connection, run_id: str, fence: int | None) -> None:
        """Inside a write transaction: refuse the write if another driver claimed the run since."""
        if fence is None:
            return
        query = select(Run.fence, Run.lease_owner).where(Run.run_id == run_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise self._not_found(run_id)
        if row.fence != fence:
            raise LeaseLostError(f"run `{run_id}` is now driven by {describe_holder(row.lease_owner or '')}; "
                                 "this driver stops without writing", run_id=run_id, holder=row.lease_owner)

    def claim_run(self, run_id: str, owner: str, ttl_s: float) -> int:
        """Become the run's one driver; returns the fencing token every later write must pass."""
        with self._write() as conn:
            run_id = self._resolve(conn, run_id)
            row = conn.execute(select(Run.fence, Run.lease_owner, Run.lease_expires_at, Run.status)
                               .where(Run.run_id == run_id)).one()
            now = now_utc()
            held = (row.lease_owner is not None and row.lease_owner != owner and row.lease_expires_at is not None
                    and row.lease_expires_at > now and holder_alive(row.lease_owner))
            if held:
                raise RunBusy(f"run `{run_id}` is still being driven by {describe_holder(row.lease_owner)} "
                              f"(lease renewed until {iso(row.lease_expires_at)}); wait for it, or stop it with "
                              f"`flyte-lab cancel {run_id}`", run_id=run_id)
            fence = int(row.fence or 0) + 1
            conn.execute(update(Run).where(Run.run_id == run_id).values(
                fence=fence, lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl_s),
                cancel_requested_at=None, cancelled_by=None))
        return fence

    def renew_run(self, run_id: str, fence: int, ttl_s: float) -> CancelSource | None:
        """Extend the lease; who requested a cancel, if anyone did. Raises `LeaseLostError` if taken over."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            conn.execute(update(Run).where(Run.run_id == run_id).values(
                lease_expires_at=now_utc() + timedelta(seconds=ttl_s)))
            return _requester(conn, run_id)

    def cancel_requested(self, run_id: str) -> CancelSource | None:
        """Who asked the run to stop, if anyone did: one primary-key read, cheap enough for every driver tick."""
        with self._read() as conn:
            return _requester(conn, run_id)

    def release_run(self, run_id: str, fence: int) -> None:
        """The driver is done: its lease ends now (a resume need not wait for it to lapse)."""
        with self._write() as conn:
            conn.execute(update(Run).where(Run.run_id == run_id, Run.fence == fence).values(
                lease_owner=None, lease_expires_at=None))

    def request_cancel(self, run_id: str, by: CancelSource) -> tuple[str, str]:
        """Ask the run's driver to cancel, on behalf of `by`. Returns (run_id, what happened): "requested" (a live
        driver will act), "recorded" (no live driver: cancelled here), or its final status if it had one."""
        with self._write() as conn:
            run_id = self._resolve(conn, run_id)
            row = conn.execute(select(Run.status, Run.lease_owner, Run.lease_expires_at)
                               .where(Run.run_id == run_id)).one()
            if row.status in RUN_TERMINAL:
                return run_id, str(row.status)
            now = now_utc()
            live = (row.lease_owner is not None and row.lease_expires_at is not None
                    and row.lease_expires_at > now and holder_alive(row.lease_owner))
            if live:
                conn.execute(update(Run).where(Run.run_id == run_id).values(cancel_requested_at=now,
                                                                             cancelled_by=by))
                return run_id, "requested"
            # nobody drives it (queued, or its driver died): record the cancel ourselves, as its driver would
            error = dumps(ErrorRecord.run_cancelled(by).to_dict())
            conn.execute(update(Task).where(Task.run_id == run_id, Task.status == TaskStatus.RUNNING).values(
                status=TaskStatus.CANCELLED, error_json=error, finished_at=now))
            conn.execute(update(Task).where(Task.run_id == run_id, Task.status == TaskStatus.QUEUED).values(
                status=TaskStatus.SKIPPED, finished_at=now))
            # its dead driver's attempts end now: none may be drawn as running on (the dashboard's timeline)
            conn.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.status == TaskStatus.RUNNING)
                         .values(status=TaskStatus.CANCELLED, kind=None, error_json=error, finished_at=now))
            conn.execute(update(Run).where(Run.run_id == run_id).values(
                status=RunStatus.CANCELLED, finished_at=now, cancel_requested_at=now, cancelled_by=by,
                fence=Run.fence + 1, lease_owner=None, lease_expires_at=None))
            # its cache locks would otherwise hold identical runs back until they lapse
            conn.execute(delete(CacheLock).where(CacheLock.owner == run_id))
            return run_id, "recorded"

    def update_run_notebook(self, run_id: str, notebook_hash: str | None, graph_json: dict[str, Any],
                            fence: int) -> None:
        """Fix-and-continue: the run now follows the edited notebook."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            conn.execute(update(Run).where(Run.run_id == run_id).values(notebook_hash=notebook_hash,
                                                                         graph_json=dumps(graph_json)))

    def run_options(self, run_id: str) -> dict[str, Any]:
        from flyte_lab.store.rows import loads

        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            text = conn.scalar(select(Run.options_json).where(Run.run_id == run_id))
        return dict(loads(text) or {})


def _requester(conn: Connection, run_id: str) -> CancelSource | None:
    row = conn.execute(select(Run.cancel_requested_at, Run.cancelled_by).where(Run.run_id == run_id)).first()
    if row is None or row.cancel_requested_at is None:
        return None
    # a request stored before `cancelled_by` existed (or by hand) still cancels: said as the command's
    return CancelSource(row.cancelled_by) if row.cancelled_by in set(CancelSource) else CancelSource.COMMAND
