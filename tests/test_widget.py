"""`%flyte_run` and `%flyte_runs` in a real kernel (nbclient), asserting on the widget state the notebook saves."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.conftest import NOTEBOOKS
from tests.process_helpers import CANCEL_BOUND_S

pytestmark = pytest.mark.cluster

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def pipeline(path: Path, divisor: str = "0.0", says: str = "") -> Path:
    """Four tasks; `ratio` (cell 5, line 3) divides by zero, `report` below it is skipped, `total` succeeds. With
    `says`, `ratio` prints it first (on line 2: the failing line stays line 3)."""
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# a pipeline with a failing branch"),
        new_code_cell("%%flyte_setup\nimport math"),
        new_code_cell("%%flyte_task make(n: int = 4) -> xs: list[float]\nxs = [float(i) for i in range(n)]"),
        new_code_cell("%%flyte_task total(xs: list[float]) -> s: float\ns = math.fsum(xs)"),
        new_code_cell(f"%%flyte_task ratio(xs: list[float], divisor: float = {divisor}) -> r: float\n"
                      f"scale = 1.0{f'; print({says!r})' if says else ''}\nr = scale * xs[-1] / divisor"),
        new_code_cell("%%flyte_task report(r: float, s: float)\nprint(r, s)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


def execute(nb: Any, folder: Path) -> Any:
    client = NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True, allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return nb


def widget_models(nb: Any) -> list[dict[str, Any]]:
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    return list(state.values())


def html_values(models: list[dict[str, Any]]) -> str:
    return "\n".join(m["state"].get("value", "") for m in models if m["model_name"] == "HTMLModel")


def errors_of(nb: Any) -> list[str]:
    """Exceptions and `UsageError`s (IPython prints those to stderr), cell by cell."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                found.append(f"{out['ename']}: {out['evalue']}")
            elif out.get("name") == "stderr" and out["text"].startswith("UsageError"):
                found.append(out["text"].strip())
    return found


def test_flyte_run_widget_shows_the_final_run(home: Path, tmp_path: Path) -> None:
    path = pipeline(tmp_path / "pipe.ipynb")
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"%flyte_run {path}"),
        new_code_cell("%flyte_runs"),
    ]), tmp_path)
    assert errors_of(nb) == []
    models = widget_models(nb)
    bars = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert len(bars) == 1
    # progress is what succeeded (make, total); the failed `ratio` and the skipped `report` are not: no full bar
    assert (bars[0]["value"], bars[0]["max"], bars[0]["description"]) == (2, 4, "2/4")
    assert bars[0]["bar_style"] == "danger"
    html = html_values(models)
    for name, status in (("make", "succeeded"), ("total", "succeeded"), ("ratio", "failed"),
                         ("report", "skipped")):
        assert f'data-task="{name}" data-status="{status}"' in html  # table row
        assert f'data-task="{name}" data-state="{status}"' in html  # graph node
    assert re.search(r'class="flyte-run-status" data-status="failed"[^>]*>failed</span>', html)  # the title
    assert f"{path} as saved at " in html
    failure = html[html.index('<div class="flyte-failure" data-task="ratio"'):]
    assert 'data-cell="5" data-line="3"' in failure
    assert "task `ratio` failed at cell 5, line 3: ZeroDivisionError: float division by zero" in failure
    assert "r = scale * xs[-1] / divisor" in failure  # the traceback, cut to the user's code
    assert "attempt-1.ipynb" in failure
    assert "%flyte_debug " in failure
    assert 'class="flyte-run-row"' in html and 'data-status="failed"' in html  # %flyte_runs lists it


def test_a_tasks_html_in_its_error_is_shown_as_text(home: Path, tmp_path: Path) -> None:
    # the widget's HTML is set as is by ipywidgets (no sanitiser): every task-written text must be escaped
    path = tmp_path / "html_output_xss.ipynb"
    shutil.copy(NOTEBOOKS / "html_output_xss.ipynb", path)
    nb = execute(new_notebook(cells=[new_code_cell("%load_ext flyte_lab"), new_code_cell(f"%flyte_run {path}")]),
                 tmp_path)
    assert errors_of(nb) == []
    html = html_values(widget_models(nb))
    assert "task `report` failed at cell 2, line 18: RuntimeError: &lt;img src=x onerror=" in html
    assert "raise RuntimeError(f&#x27;&lt;img src=x onerror=" in html  # the traceback
    assert "<img" not in html and "onerror=\"" not in html


def test_background_run_returns_at_once_and_ends_exact(home: Path, tmp_path: Path) -> None:
    path = pipeline(tmp_path / "pipe.ipynb", divisor="2.0")
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"run = %flyte_run {path} --background\nprint('returned', run.record)"),
        new_code_cell("record = run.wait()\nprint(record['status'])"),
    ]), tmp_path)
    assert errors_of(nb) == []
    assert "returned None" in nb.cells[1].outputs[-1]["text"]  # the cell did not wait for the run
    assert nb.cells[2].outputs[-1]["text"].strip() == "succeeded"
    bars = [m["state"] for m in widget_models(nb) if m["model_name"] == "IntProgressModel"]
    assert bars[0]["value"] == bars[0]["max"] == 4
    assert bars[0]["bar_style"] == "success"


def test_refused_launch_is_one_clear_error(home: Path, tmp_path: Path) -> None:
    path = pipeline(tmp_path / "pipe.ipynb")
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"%flyte_run {path} -p nope=1"),
        new_code_cell("%flyte_run"),
    ]), tmp_path)
    errors = errors_of(nb)
    assert errors[0].startswith("UsageError: -p nope: `nope` is not a workflow input")
    assert errors[1].startswith("UsageError: %flyte_run: this kernel does not know its notebook; pass the path")
    # no run exists: the widget shows no (empty "0/?") bar and no Cancel, and says "refused" without repeating
    # the refusal printed below the cell
    models = widget_models(nb)
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    [bar] = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    buttons = [m["state"] for m in models if m["model_name"] == "ButtonModel"]
    assert [b["description"] for b in buttons] == ["Cancel", "Resume", "Relaunch"]
    for part in (bar, *buttons):
        assert state[part["layout"].removeprefix("IPY_MODEL_")]["state"]["display"] == "none"
    html = html_values(models)
    assert 'data-status="refused"' in html and "is not a workflow input" not in html


def test_map_over_elements_count_in_the_progress(home: Path, tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "example_notebooks" / "fanout_retries_cache.ipynb"
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"%flyte_run {example} -p sizes=[4,8,16]"),
    ]), tmp_path)
    assert errors_of(nb) == []
    models = widget_models(nb)
    bars = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert bars[0]["value"] == bars[0]["max"] == 3 + 3  # fetch, build_corpus, pick + three `score` elements
    assert bars[0]["bar_style"] == "success"
    html = html_values(models)
    assert '<td><b>score</b> x3 elements</td>' in html
    assert 'data-task="fetch" data-status="succeeded"' in html and "<td>2</td>" in html  # its retry: 2 attempts


def test_cancel_from_the_widget_stops_the_run(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "blocking.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os\nimport time"),
        new_code_cell("%%flyte_task block(flag: str = 'never-created') -> done: bool\n"
                      "while not os.path.exists(flag):  # waits until the run is cancelled\n"
                      "    time.sleep(0.05)\ndone = True"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"run = %flyte_run {path} --background"),
        new_code_cell("import time\nfrom flyte_lab import get_run\ndeadline = time.monotonic() + 120\n"
                      "while not (run.run_id and get_run(run.run_id)['tasks']['block']['status'] == 'running'):\n"
                      "    assert time.monotonic() < deadline and not run.finished.is_set()\n"
                      "    time.sleep(0.05)  # polling the store for a condition\n"
                      "clicked = time.monotonic()\n"
                      "run.widget.cancel.click()  # what the Cancel button does\n"
                      "print(run.wait()['status'], time.monotonic() - clicked)"),
    ]), tmp_path)
    assert errors_of(nb) == []
    status, took = nb.cells[2].outputs[-1]["text"].split()
    # click to the run's end: its kernel killed, the run recorded, its local cluster closed (~5 s before)
    assert status == "cancelled" and float(took) <= CANCEL_BOUND_S, took
    models = widget_models(nb)
    bars = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    # the cancelled task is no progress: an empty bar, not a full one
    assert [(b["bar_style"], b["value"], b["max"]) for b in bars] == [("warning", 0, 1)]
    buttons = [m["state"] for m in models if m["model_name"] == "ButtonModel"]
    assert buttons[0]["description"] == "Cancel" and buttons[0]["disabled"] is True  # nothing left to cancel
    assert buttons[0]["button_style"] == ""  # and it looks it: grey, not the orange of an action
    html = html_values(models)
    assert re.search(r'data-status="cancelled"[^>]*>cancelled</span>', html)
    # the task it stopped is `cancelled`, not `failed`; the widget says who cancelled and offers no debugger
    assert 'data-task="block" data-status="cancelled"' in html
    assert "cancelled from the run widget" in html
    assert "%flyte_debug" not in html and "flyte-failure" not in html


def test_resume_and_relaunch_from_the_widget(home: Path, tmp_path: Path) -> None:
    """Resume continues the failed run after the notebook was fixed on disk; Relaunch starts a new run and the widget
    follows it; the failure's executed notebook is a link Lab's extension opens (no `file://` URL)."""
    path = pipeline(tmp_path / "pipe.ipynb")
    fixed = path.read_text().replace("/ divisor", "/ (divisor + 2.0)")
    assert fixed != path.read_text()
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"run = %flyte_run {path} --background\n"
                      "run.wait()\n"
                      "failed_id = run.run_id\n"
                      "print([b.disabled for b in (run.widget.cancel, run.widget.resume, run.widget.relaunch)])"),
        new_code_cell(f"import pathlib\npathlib.Path({str(path)!r}).write_text({fixed!r})\n"
                      "run.widget.resume.click()  # what the Resume button does\n"
                      "print(run.wait()['status'], run.run_id == failed_id)\n"
                      "print([b.disabled for b in (run.widget.cancel, run.widget.resume, run.widget.relaunch)])"),
        new_code_cell("run.widget.relaunch.click()\n"
                      "record = run.wait()\n"
                      "print(record['status'], run.run_id != failed_id, record['run_id'] == run.run_id)\n"
                      "print(run.run_id in run.widget.title.value)"),
    ]), tmp_path)
    assert errors_of(nb) == []
    texts = [c.outputs[-1]["text"].strip() for c in nb.cells[1:]]
    assert texts[0] == "[True, False, False]"  # failed: nothing to cancel, Resume and Relaunch offered
    assert texts[1].split("\n") == ["succeeded True", "[True, True, False]"]  # the same run, nothing to resume
    assert texts[2].split("\n") == ["succeeded True True", "True"]
    from flyte_lab.store import RunStore

    with RunStore.from_env(home, create=False) as store:
        runs = store.list_runs()
        assert len(runs) == 2 and {r["status"] for r in runs} == {"succeeded"}
    models = widget_models(nb)
    buttons = [m["state"]["description"] for m in models if m["model_name"] == "ButtonModel"]
    assert buttons == ["Cancel", "Resume", "Relaunch"]


@pytest.mark.timeout(300)
def test_a_running_tasks_newest_lines_show_while_it_runs_and_stay_when_it_failed(home: Path, tmp_path: Path) -> None:
    """`tick` prints a line every half second until the test says stop, then fails: the widget shows its lines
    while the store still says it runs, and its last lines stay once the run has failed."""
    from flyte_lab.kernel_ext.output_tail import TAIL_LINES
    from flyte_lab.store import RunStore
    from tests.test_output_tail import shown

    stop = tmp_path / "stop"
    path = tmp_path / "ticker.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport os\nimport time"),
        new_code_cell(f"%%flyte_task tick(stop: str = {str(stop)!r}) -> n: int\nn = 0\n"
                      "while not os.path.exists(stop) and n < 240:  # at most two minutes\n"
                      "    print(f'tick {n}', flush=True)\n    n += 1\n    time.sleep(0.5)\n"
                      "raise RuntimeError(f'stopped after {n} ticks')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"run = %flyte_run {path} --background"),
        new_code_cell("import json, re, time\nfrom flyte_lab import get_run\ndeadline = time.monotonic() + 180\n"
                      "while len(re.findall(r'tick \\d+', run.widget.output.value)) < 3:  # the widget, as drawn\n"
                      "    assert time.monotonic() < deadline and not run.finished.is_set()\n"
                      "    time.sleep(0.05)\n"
                      "drawn = run.widget.output.value\n"
                      "status = get_run(run.run_id)['tasks']['tick']['status']  # read after the widget was\n"
                      f"open({str(stop)!r}, 'w').close()\n"
                      "print(json.dumps({'drawn': drawn, 'status': status}))"),
        new_code_cell("print(run.wait()['status'])"),
    ]), tmp_path)
    assert errors_of(nb) == []
    live = json.loads(nb.cells[2].outputs[-1]["text"])
    assert live["status"] == "running"  # the lines were in the widget while the task still ran
    lines = shown(live["drawn"], "tick")
    assert len(lines) >= 3 and lines == [f"tick {i}" for i in range(len(lines))], lines
    assert 'data-task="tick" data-status="running"' in live["drawn"]
    assert nb.cells[3].outputs[-1]["text"].strip() == "failed"

    html = html_values(widget_models(nb))  # the saved picture: the failed task's last lines kept
    with RunStore.from_env(create=False) as store:
        [run] = store.list_runs()
        printed = [x["text"] for x in store.task_output(run["run_id"], "tick")["lines"] if x["stream"] == "stdout"]
    assert len(printed) >= 3
    assert 'data-task="tick" data-status="failed"' in html
    assert shown(html, "tick") == printed[-TAIL_LINES:]
    assert "stopped after" in html  # the error, in its failure box


def test_a_failures_executed_notebook_is_a_link_for_lab() -> None:
    from flyte_lab.kernel_ext.run_widget import failures_html

    task = {"status": "failed", "output_notebook": "/home/u/.flyte_lab/artifacts/x/attempt-1.ipynb",
            "error": {"type": "ZeroDivisionError", "message": "division by zero", "cell": 5, "line": 3}}
    html = failures_html("r1", {"ratio": task}, None)
    assert 'data-flyte-executed-run="r1" data-flyte-executed-task="ratio"' in html
    assert "file://" not in html and 'href="#"' in html
    assert "/home/u/.flyte_lab/artifacts/x/attempt-1.ipynb" in html  # still readable where no Lab opens it
