"""The live output of the task shown in detail: the newest lines it printed, read from the store each tick while
it runs (`store/task_output.py`), escaped text in a `<pre>`; a finished task's last lines stay shown."""

from __future__ import annotations

from collections import deque
from html import escape
from typing import Any

import param

from flyte_lab.dashboard.common import html
from flyte_lab.dashboard.run_state import RunPart, RunState
from flyte_lab.presentation.formats import attempt_label
from flyte_lab.statuses import TASK_TERMINAL
from flyte_lab.store.task_output import READ_LIMIT

SHOWN_LINES = 200


class TaskOutput(RunPart):
    def __init__(self, state: RunState, store: Any) -> None:
        super().__init__(state)
        self.store = store
        self.pane = html("")
        self._task: str | None = None
        self._since = 0
        self._lines: deque[str] = deque(maxlen=SHOWN_LINES)
        self._finished_read = False  # the last read after the task ended is done: nothing more will come
        self.refresh()

    def __panel__(self) -> Any:
        return self.pane

    @param.depends("state.task", watch=True)
    def _task_changed(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Read what the task printed since the last read (the page's tick calls this every second)."""
        task = self.state.task
        if task != self._task:
            self._task, self._since, self._finished_read = task, 0, False
            self._lines.clear()
        if task is None or self._finished_read:
            return
        status = ((self.state.run.get("tasks") or {}).get(task) or {}).get("status")
        ended = status in TASK_TERMINAL
        while True:  # a full page has more after it: the newest lines are the ones to show
            page = self.store.task_output(self.state.run_id, task, since=self._since)
            self._since = page["next"]
            for line in page["lines"]:
                # a retry's or a map element's lines say whose they are; a first attempt's are the task's own
                label = attempt_label(line["task"], line["attempt"], line["element"])
                self._lines.append(f"{label} | {line['text']}" if label != task else str(line["text"]))
            if len(page["lines"]) < READ_LIMIT:
                break
        self._finished_read = ended
        self._draw(status, page["dropped"])

    def _title(self, status: Any) -> str:
        live = " (live)" if status not in TASK_TERMINAL else ""
        return f'<h4 class="flyte-output-title">output of <code>{escape(self._task or "")}</code>{live}</h4>'

    def _draw(self, status: Any, dropped: list[str]) -> None:
        if not self._lines:
            said = "waiting for its first line" if status not in TASK_TERMINAL else "it printed nothing"
            self.pane.object = f'{self._title(status)}<p class="flyte-output-empty"><i>{escape(said)}</i></p>'
            return
        note = (f"<p><i>the last {SHOWN_LINES} lines; the executed notebook has them all</i></p>"
                if len(self._lines) == SHOWN_LINES or dropped else "")
        text = escape("\n".join(self._lines))
        self.pane.object = (f'{self._title(status)}{note}'
                            f'<pre class="flyte-output" style="max-height:24em;overflow:auto">{text}</pre>')
