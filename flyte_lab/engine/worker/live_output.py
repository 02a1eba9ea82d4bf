"""What a running attempt's cells print, sent to the driver as it comes (a task's live output).

Lines travel as Dask worker events (`worker.log_event(OUTPUT_TOPIC, ...)`), through the scheduler to the driver's
client, which stores them (`store/task_output.py`): no worker writes to the driver's disk, so live output works
wherever the workers are (the local cluster, `tcp://`, `k8s`). A line reaches the driver within `FLUSH_S` of being
printed. Bounded: a line is cut at `MAX_LINE` characters and one flush sends at most `MAX_LINES_PER_FLUSH` lines
(the older ones of a burst are counted, not sent); the executed notebook keeps everything. The values of the
task's own secrets (`--env`) are masked: what a task prints of them reaches no store.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import Any

OUTPUT_TOPIC = "flyte-lab-output"
FLUSH_S = 0.5
MAX_LINE = 4000
MAX_LINES_PER_FLUSH = 1000
# the scheduler keeps the last `distributed.admin.low-level-log-length` (1000) events of a topic in memory:
# 64 KB each at most
MAX_FLUSH_CHARS = 64_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Send = Callable[[dict[str, Any]], None]


def output_text(output: Any) -> tuple[str, str] | None:
    """An nbformat output as (stream, text): `stdout`/`stderr`, `error` (the traceback, colours removed) or
    `display` (the plain-text form of a displayed value; a value with none is named by its MIME type)."""
    kind = output.get("output_type")
    if kind == "stream":
        return str(output.get("name") or "stdout"), str(output.get("text") or "")
    if kind == "error":
        return "error", _ANSI.sub("", "\n".join(output.get("traceback") or [])) + "\n"
    if kind in ("execute_result", "display_data"):
        data = output.get("data") or {}
        text = data.get("text/plain")
        if text is None:
            text = "[" + ", ".join(sorted(data)) + "]" if data else ""
        return "display", (text if isinstance(text, str) else "".join(text)) + "\n"
    return None


class LiveOutput:
    """One attempt's output lines, buffered per stream until a newline and flushed at most every `FLUSH_S`
    through `send` (None: nothing is sent, e.g. outside a Dask worker)."""

    def __init__(self, key: str, send: Send | None, secrets: list[str] | tuple[str, ...] = ()) -> None:
        self.key = key
        self._send = send
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self._lock = threading.Lock()
        self._lines: list[list[str]] = []  # [stream, text], waiting for the next flush
        self._partial: dict[str, str] = {}  # per stream: text after its last newline
        self._element: int | None = None  # the map-over element of a batch that prints now (`element`)
        self._next: dict[int | None, int] = {}  # the number of the next line (1-based, per attempt or element)
        self._skipped = 0
        self._armed = False
        self._extra: dict[str, Any] = {}

    def add(self, output: Any) -> None:
        described = output_text(output)
        if described is None or self._send is None:
            return
        stream, text = described
        with self._lock:
            pieces = (self._partial.pop(stream, "") + text).split("\n")
            if pieces[-1]:
                self._partial[stream] = self._pending(pieces[-1])
            self._lines += [[stream, self._line(piece)] for piece in pieces[:-1]]
            arm = not self._armed
            self._armed = True
        if arm:
            self._arm()

    def _line(self, piece: str) -> str:
        """A line as shown: a CRLF's `\\r` dropped; a progress bar redraws its line after `\\r`, so the text after
        the last one; the task's secrets masked; NUL (which PostgreSQL text cannot hold) replaced; cut."""
        shown = piece.removesuffix("\r").rsplit("\r", 1)[-1]
        return self._masked(shown).replace("\x00", "\ufffd")[:MAX_LINE]

    def _pending(self, text: str) -> str:
        """The unfinished line kept until its newline, bounded: a progress bar's latest state only (after its
        last `\\r`; a trailing one is kept, it may be half a CRLF), else redrawing a bar for the life of a cell
        costs quadratic time; a longer line's head only (masked first: no half secret is left at the cut)."""
        text = text[text.rfind("\r", 0, len(text) - 1) + 1:]
        keep = MAX_LINE + (len(self._secrets[0]) if self._secrets else 0)
        if len(text) <= keep:
            return text
        crlf_half = "\r" if text.endswith("\r") else ""
        return self._masked(text.removesuffix("\r"))[:keep] + crlf_half

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def note(self, **fields: Any) -> None:
        """Something the driver should record with the next flush (e.g. the executed notebook's first save)."""
        with self._lock:
            self._extra.update(fields)
        self.flush()

    def element(self, index: int) -> None:
        """A batch's next element begins: what came before is sent as the previous one's (its unfinished line
        too), what comes after is `index`'s, numbered from 1."""
        if index == self._element:
            return
        self.flush(final=True)
        with self._lock:
            self._element = index

    def _arm(self) -> None:
        import asyncio

        try:  # papermill's cells run on the attempt's own event loop: flush from it, no thread of our own
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        except RuntimeError:
            self.flush()

    def flush(self, final: bool = False) -> None:
        with self._lock:
            self._armed = False
            if final:
                self._lines += [[stream, self._line(text)] for stream, text in self._partial.items()]
                self._partial.clear()
            lines, self._lines, extra, self._extra = self._lines, [], self._extra, {}
            if not lines and not extra:
                return
            first = self._next.get(self._element, 1)
            self._next[self._element] = first + len(lines)
            element = self._element
            cut = max(len(lines) - MAX_LINES_PER_FLUSH, 0)  # a burst: the newest lines, the rest counted
            size = sum(len(text) for _, text in lines[cut:])
            while size > MAX_FLUSH_CHARS:
                size -= len(lines[cut][1])
                cut += 1
            if cut:
                self._skipped += cut
                first, lines = first + cut, lines[cut:]
        if self._send is None:
            return
        # a worker shutting down: output is a view, never a reason to fail the task
        with contextlib.suppress(Exception):
            self._send({"key": self.key, "first": first, "lines": lines, "skipped": self._skipped,
                        "time": time.time(), **({"element": element} if element is not None else {}), **extra})


def worker_sender() -> Send | None:
    """Send through this Dask worker's event stream; None outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return lambda message: worker.log_event(OUTPUT_TOPIC, message)
