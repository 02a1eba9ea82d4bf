"""The run widget's output tail: the newest lines each running task printed, and a failed task's last ones.

Pure, as `run_widget` is: `OutputTails` takes the pages `RunStore.task_output` answers (`run_follow` reads them, each
from where the last one ended) and keeps each task's newest `TAIL_LINES`; `output_html` draws them for the tasks
running now and the ones that failed, whose lines stay after the run ended (the widget's saved state keeps them
for whoever triages it). A line is the task's text, never the widget's markup: every part of it is escaped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from flyte_lab.presentation.formats import attempt_label
from flyte_lab.statuses import TaskStatus

TAIL_LINES = 10
SHOWN_FOR = (TaskStatus.RUNNING, TaskStatus.FAILED)
# an error's traceback is the failure's own box (cut to the user's code): in a tail it would push out what the
# task printed before it
_NOT_TAILED = "error"


class OutputTails:
    """Each task's newest lines (store line dicts, oldest first), fed page by page; `since` is where the next
    read starts."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.since = 0
        self.by_task: dict[str, deque[Mapping[str, Any]]] = {}

    def add(self, page: Mapping[str, Any]) -> None:
        for line in page["lines"]:
            if line["stream"] != _NOT_TAILED:
                self.by_task.setdefault(line["task"], deque(maxlen=TAIL_LINES)).append(line)
        self.since = page["next"]


def output_html(run_id: str, tasks: Mapping[str, Mapping[str, Any]],
                tails: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One block per running or failed task that printed something, in the task table's order: its newest
    `TAIL_LINES` lines (a retry's or a map element's say whose they are: `fit#2 | …`, `sq[3] | …`)."""
    blocks = []
    for name, task in tasks.items():
        status = str(task.get("status"))
        lines = [line for line in tails.get(name, ()) if line.get("stream") != _NOT_TAILED][-TAIL_LINES:]
        if status not in SHOWN_FOR or not lines:
            continue
        text = "\n".join(_line_text(name, line) for line in lines)
        blocks.append(
            f'<div class="flyte-output" data-task="{escape(name)}" data-status="{escape(status)}" '
            'style="margin-top:6px">'
            f'<div style="font-size:12px">output of <b>{escape(name)}</b> ({escape(status)}), its newest lines; '
            f"<code>flyte-lab logs {escape(run_id)} {escape(name)}</code> prints the rest</div>"
            '<pre class="flyte-output-lines" style="white-space:pre-wrap;font-size:11px;font-family:monospace;'
            f'max-height:16em;overflow:auto;margin:2px 0;padding:4px;background:#f6f6f6">{escape(text)}</pre></div>')
    return "".join(blocks)


def _line_text(task: str, line: Mapping[str, Any]) -> str:
    # a first attempt's lines are the task's own; a retry's or a map element's say whose they are
    label = attempt_label(task, int(line.get("attempt") or 1), line.get("element"))
    return f"{label} | {line.get('text', '')}" if label != task else str(line.get("text", ""))
