"""How a partial run's reused tasks read in `show`, `outputs`, the widget's table and the dashboard's (pure: a
`show --json` record in, text out)."""

from __future__ import annotations

from typing import Any

from flyte_lab.cli import report
from flyte_lab.dashboard.table_rows import task_rows
from flyte_lab.kernel_ext.run_widget import tasks_html

SOURCE = {"run_id": "20260101-000000-aaaaaa", "attempt": 2, "changed": True}
RUN: dict[str, Any] = {
    "run_id": "20260102-000000-bbbbbb", "notebook": "/x/chain.ipynb", "status": "succeeded", "params": {},
    "partial": {"select": {"only": ["c"], "from": None, "to": None}, "reuse": SOURCE["run_id"],
                "allow_changed": True},
    "tasks": {
        "b": {"status": "reused", "attempts": 2, "cell": 3, "reused_from": SOURCE,
              "outputs": {"y": {"type": "int", "uri": "file:///a/y", "preview": "11"}}},
        "k": {"status": "cached", "attempts": 0, "cell": 4, "reused_from": None, "outputs": {}},
        "c": {"status": "succeeded", "attempts": 1, "cell": 5, "reused_from": None,
              "outputs": {"z": {"type": "int", "uri": "file:///a/z", "preview": "33"}}},
    },
}


def _text(renderable: Any) -> str:
    console = report.make_console()
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def test_show_and_outputs_name_each_reused_tasks_source() -> None:
    shown = _text(report.run_report(RUN))
    assert "--only c --reuse 20260101-000000-aaaaaa --allow-changed" in shown
    assert "reused: b from run 20260101-000000-aaaaaa (attempt 2, its code changed since (--allow-changed))" in shown
    assert "from 20260101-000000-aaaaaa" in shown  # the tasks table's cached column
    outputs = _text(report.outputs_table(RUN["tasks"]))
    assert "from run" in outputs and "20260101-000000-aaaaaa" in outputs and "this run" in outputs


def test_the_widget_and_dashboard_tables_say_where_reused_outputs_come_from() -> None:
    assert [row["cached"] for row in task_rows(RUN)] == ["from 20260101-000000-aaaaaa", "yes", ""]
    html = tasks_html(RUN["tasks"], {})
    assert 'data-status="reused"' in html and "<td>from 20260101-000000-aaaaaa</td>" in html
