"""The run widget's output tail (issue 20): pure rendering, and the follower reading a real store page by page.
A real run's lines in the widget while its task runs: `test_widget.py`; drawn in Chromium: `test_widget_browser.py`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from flyte_lab.kernel_ext.output_tail import TAIL_LINES, OutputTails, output_html
from flyte_lab.store import RunStore
from flyte_lab.store.task_output import OutputChunk


def line(row: int, task: str, text: str, attempt: int = 1, element: int | None = None,
         stream: str = "stdout") -> dict[str, Any]:
    """A line as `RunStore.task_output` answers it."""
    return {"id": row, "task": task, "attempt": attempt, "element": element, "line": row, "stream": stream,
            "text": text, "at": "2026-12-01T00:00:00+00:00"}


def shown(value: str, task: str) -> list[str]:
    """The lines a task's block shows, as the reader sees them (unescaped), or [] when it has no block."""
    block = re.search(rf'<div class="flyte-output" data-task="{re.escape(task)}".*?'
                      r'<pre class="flyte-output-lines"[^>]*>(.*?)</pre>', value, re.S)
    return html.unescape(block.group(1)).split("\n") if block else []


def test_each_running_or_failed_task_shows_its_newest_lines_escaped_and_labelled() -> None:
    tails = OutputTails("r1")
    tails.add({"lines": [line(i, "fit", f"epoch {i}") for i in range(1, 26)], "next": 25})
    assert tails.since == 25
    tails.add({"lines": [line(26, "fit", "Traceback (most recent call last):", stream="error"),
                         line(27, "fit", "<script>alert('x')</script> & more", attempt=2),
                         line(28, "sq", "element three", element=3),
                         line(29, "sq", "three again", attempt=2, element=3),
                         line(30, "done", "finished fine"),
                         line(31, "bad", "loading <b>data</b>"),
                         line(32, "bad", "ZeroDivisionError: division by zero", stream="error")], "next": 32})
    assert tails.since == 32
    tasks = {"done": {"status": "succeeded"}, "fit": {"status": "running"}, "sq": {"status": "running"},
             "bad": {"status": "failed"}, "later": {"status": "queued"}}
    value = output_html("r1", tasks, tails.by_task)

    fit = shown(value, "fit")
    # bounded to the newest lines; a retry's lines say whose they are; a traceback is left to the failure's box
    assert len(fit) == TAIL_LINES
    assert fit == [*(f"epoch {i}" for i in range(26 - TAIL_LINES + 1, 26)),
                   "fit#2 | <script>alert('x')</script> & more"]
    assert shown(value, "sq") == ["sq[3] | element three", "sq[3]#2 | three again"]
    assert shown(value, "bad") == ["loading <b>data</b>"]  # a failed task's last lines stay
    assert shown(value, "done") == [] and 'data-task="later"' not in value  # finished fine / printed nothing
    # the task's text is text: nothing it printed becomes markup
    assert "<script>" not in value and "<b>data" not in value
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in value
    assert [m.group(1) for m in re.finditer(r'class="flyte-output" data-task="(\w+)"', value)] == ["fit", "sq", "bad"]
    assert "<code>flyte-lab logs r1 fit</code>" in value
    # the tail is bounded whatever it is given
    many = {"fit": [line(i, "fit", f"l{i}") for i in range(1, 100)]}
    assert shown(output_html("r1", {"fit": {"status": "running"}}, many), "fit") == [
        f"l{i}" for i in range(100 - TAIL_LINES, 100)]


def test_the_follower_reads_each_line_once_and_the_widget_shows_the_newest(home: Path, tmp_path: Path) -> None:
    from flyte_lab.kernel_ext.run_follow import RunFollower

    notebook = str(tmp_path / "t.ipynb")
    with RunStore.from_env() as store:
        run_id = store.create_run(notebook, {}, {"tasks": [{"name": "fit", "cell": 1}], "edges": []},
                                  [{"name": "fit", "cell": 1}], "local")
        store.set_task_status(run_id, "fit", "running")
        store.append_output(run_id, [OutputChunk("fit", 1, None, 1, [("stdout", "l1"), ("stdout", "l2")], 1.0)])
    follower = RunFollower(notebook, {}, "test")
    follower.run_id = run_id
    try:
        follower.refresh()
        assert shown(follower.widget.output.value, "fit") == ["l1", "l2"]
        with RunStore.from_env() as store:
            store.append_output(run_id, [OutputChunk("fit", 1, None, 3, [("stdout", "l3")], 2.0)])
        follower.refresh()
        # read from where the last read ended: no line twice
        assert shown(follower.widget.output.value, "fit") == ["l1", "l2", "l3"]
        with RunStore.from_env() as store:
            store.append_output(run_id, [OutputChunk("fit", 1, None, 4, [("stdout", f"l{i}") for i in range(4, 16)],
                                                     3.0)])
            store.set_task_status(run_id, "fit", "failed")
    finally:
        follower.finished.set()
        follower.follow()  # the last refresh, then its store is closed
    assert shown(follower.widget.output.value, "fit") == [f"l{i}" for i in range(16 - TAIL_LINES, 16)]
    assert 'data-status="failed"' in follower.widget.output.value  # a failed task's lines stay
