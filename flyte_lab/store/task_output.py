"""A run's live output (what its running attempts print): a mixin of `RunStore`.

The driver writes the lines its workers send (`engine/worker/live_output.py`) in one transaction per loop turn,
fenced like every other write of run state; each attempt (each map-over element) keeps its newest `KEEP_LINES`.
Readers page by the row id (`since`): `flyte-lab logs --follow`, REST `GET runs/ID/tasks/TASK/log?since=N`, the
widget, the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select

from flyte_lab.presentation.formats import attempt_label
from flyte_lab.store.rows import iso, to_db_time
from flyte_lab.store.schema import TaskOutputLine
from flyte_lab.store.store_part import StorePart

KEEP_LINES = 2000
READ_LIMIT = 5000


@dataclass(frozen=True)
class OutputChunk:
    """Lines of one attempt, numbered from `first`."""

    task: str
    attempt: int
    element: int | None
    first: int
    lines: list[tuple[str, str]]  # (stream, text)
    at: float


def line_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "task": row.task, "attempt": row.attempt,
            "element": None if row.element < 0 else row.element, "line": row.line_no, "stream": row.stream,
            "text": row.text, "at": iso(row.at)}


class TaskOutputMixin(StorePart):
    """`append_output` (the driver) and `task_output` (every reader)."""

    def check_fence(self, conn: Connection, run_id: str, fence: int | None) -> None:
        raise NotImplementedError  # LeaseMixin's, earlier in RunStore's bases

    def append_output(self, run_id: str, chunks: list[OutputChunk], fence: int | None = None) -> None:
        if not chunks:
            return
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            rows = [{"run_id": run_id, "task": c.task, "attempt": c.attempt,
                     "element": -1 if c.element is None else c.element, "line_no": c.first + i, "stream": stream,
                     "text": text, "at": to_db_time(datetime.fromtimestamp(c.at, UTC))}
                    for c in chunks for i, (stream, text) in enumerate(c.lines)]
            if rows:
                conn.execute(insert(TaskOutputLine), rows)
            for c in {(c.task, c.attempt, c.element): c for c in chunks}.values():
                self._trim(conn, run_id, c)

    @staticmethod
    def _trim(conn: Connection, run_id: str, chunk: OutputChunk) -> None:
        last = chunk.first + len(chunk.lines) - 1
        if last <= KEEP_LINES:
            return
        conn.execute(delete(TaskOutputLine).where(and_(
            TaskOutputLine.run_id == run_id, TaskOutputLine.task == chunk.task,
            TaskOutputLine.attempt == chunk.attempt,
            TaskOutputLine.element == (-1 if chunk.element is None else chunk.element),
            TaskOutputLine.line_no <= last - KEEP_LINES)))

    def task_output(self, run_id: str, task: str | None = None, since: int = 0,
                    limit: int = READ_LIMIT) -> dict[str, Any]:
        """Lines after row id `since` (of `task`, else of every task), oldest first, at most `limit`; `next` is the
        `since` of the following read; `dropped` names each attempt (`task`, `task#2`, `task[3]`) whose first
        lines are no longer kept."""
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            where = [TaskOutputLine.run_id == run_id, TaskOutputLine.id > since]
            if task is not None:
                where.append(TaskOutputLine.task == task)
            rows = conn.execute(select(TaskOutputLine).where(*where).order_by(TaskOutputLine.id).limit(limit)).all()
            firsts = select(TaskOutputLine.task, TaskOutputLine.attempt, TaskOutputLine.element,
                            func.min(TaskOutputLine.line_no)).where(TaskOutputLine.run_id == run_id)
            if task is not None:
                firsts = firsts.where(TaskOutputLine.task == task)
            firsts = firsts.group_by(TaskOutputLine.task, TaskOutputLine.attempt, TaskOutputLine.element)
            dropped = [attempt_label(t, a, e) for t, a, e, first in conn.execute(firsts).all() if first > 1]
        lines = [line_view(r) for r in rows]
        return {"run_id": run_id, "lines": lines, "next": lines[-1]["id"] if lines else since, "dropped": dropped}
