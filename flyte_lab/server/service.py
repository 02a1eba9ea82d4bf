"""What the handlers do, as plain blocking functions over the graph, the run store and the scheduler.

No HTTP here: paths arrive resolved under the root, answers are the CLI's JSON objects (DESIGN.md 2-3),
with each stored notebook path also given relative to the Jupyter root (`path`). Runs and schedules whose
notebooks lie outside the root are neither listed nor found (`confined_run`, `confined_schedule`). The store is
the server's one `RunStore` (`store.shared`), opened by the first request that finds one, never per request.
"""

from __future__ import annotations

import functools
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from flyte_lab.errors import (
    ExecutedNotebookNotFound,
    NoStore,
    RunNotFound,
    ScheduleNotFound,
    TaskNotFound,
    ValidationFailed,
)
from flyte_lab.server.models import FirePreview
from flyte_lab.server.paths import relative_to_root, resolve_notebook
from flyte_lab.statuses import CancelSource


def _graph_answer(wf: Any) -> dict[str, Any]:
    """The `validate --json` object, plus `input_fields`: the sidebar's form for the workflow inputs."""
    from flyte_lab.graph.validate import graph_json
    from flyte_lab.server.forms import input_fields

    return dict(graph_json(wf), input_fields=input_fields(wf))


def graph_of_file(path: Path) -> dict[str, Any]:
    from flyte_lab.graph.validate import validate_notebook

    return _graph_answer(validate_notebook(str(path)))


def graph_of_content(path: Path, content: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The `validate --json` object of the editor's content (unsaved); a malformed one is `bad-notebook`."""
    import nbformat

    from flyte_lab.graph.model import Diagnostic, Workflow
    from flyte_lab.graph.validate import validate_notebook

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(content)
    except Exception as exc:
        wf = Workflow(path=str(path))
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        wf.diagnostics = [Diagnostic("error", "bad-notebook", f"not a valid notebook (nbformat schema): {reason}")]
        return _graph_answer(wf)
    return _graph_answer(validate_notebook(str(path), cli_params=params or None, nb=content))


def check_launch(path: Path, params: dict[str, Any]) -> None:
    """Refuse (400 with every diagnostic) what `run_notebook` would refuse, before a process starts."""
    from flyte_lab.graph.validate import resolve_params, validate_notebook

    wf = validate_notebook(str(path), cli_params=params, launching=True)
    if wf.errors:
        first = wf.errors[0]
        more = f" (and {len(wf.errors) - 1} more)" if len(wf.errors) > 1 else ""
        raise ValidationFailed(first.format(path.name) + more, diagnostics=[d.as_json() for d in wf.diagnostics])
    resolve_params(wf, params)


def _store(create: bool = False) -> Any:
    from flyte_lab.store.shared import shared_store

    return shared_store(create)


LIST_LIMIT = 50


def list_runs(root: str, notebook: str | None) -> list[dict[str, Any]]:
    """The newest runs (at most `LIST_LIMIT`) whose notebooks lie under the root, each with its progress and its
    tasks' states (`served_summary`); the others are not listed. A page of runs is a few statements, however
    many runs it holds."""
    from flyte_lab.run_progress import manifest_lengths

    try:
        store = _store()
    except NoStore:
        return []
    shown: list[dict[str, Any]] = []
    offset = 0
    list_length = manifest_lengths()
    while len(shown) < LIST_LIMIT:  # runs of notebooks elsewhere are skipped, so page until enough
        page = store.run_summaries(limit=LIST_LIMIT, offset=offset, notebook=notebook)
        shown += [served_summary(r, path, list_length) for r in page
                  if (path := relative_to_root(root, r["notebook"])) is not None]
        if len(page) < LIST_LIMIT:
            break
        offset += LIST_LIMIT
    return shown[:LIST_LIMIT]


def served_summary(summary: dict[str, Any], path: str, list_length: Any) -> dict[str, Any]:
    """A `run_summaries` element as `GET runs` serves it: with `path` and `progress`; each task's error without its
    traceback (`GET runs/ID` has it); neither the graph nor the outputs it was counted from."""
    from flyte_lab.run_progress import progress, summary_sizes

    done, total = progress(summary["tasks"], summary_sizes(summary, list_length))
    tasks = {name: {"status": t["status"], "cell": t["cell"],
                    "error": {k: v for k, v in t["error"].items() if k != "traceback"}
                    if isinstance(t["error"], dict) else t["error"]}
             for name, t in summary["tasks"].items()}
    served = {k: v for k, v in summary.items() if k != "graph"}
    return dict(served, path=path, tasks=tasks, progress={"done": done, "total": total})


def confined_run(root: str, run_id: str) -> dict[str, Any]:
    """The `show --json` object of the run with exactly this id, if its notebook lies under the root.

    Every route on one run goes through here first. A run that does not exist, a prefix of an id and a run
    whose notebook is elsewhere get the same answer, so nothing is learnt about runs outside the root.
    """
    hidden = RunNotFound(f"no run `{run_id}` under the Jupyter root", run_id=run_id)
    try:
        run = _store().get_run(run_id)
    except (NoStore, RunNotFound):
        raise hidden from None
    path = relative_to_root(root, run["notebook"])
    if run["run_id"] != run_id or path is None:
        raise hidden
    run.pop("attempts_detail", None)
    return dict(run, path=path)


def with_progress(run: dict[str, Any]) -> dict[str, Any]:
    """The run with its `progress` (`{"done", "total"}`), counted as the widget and the dashboard count it."""
    from flyte_lab.run_progress import manifest_lengths, run_progress

    graph = _store().get_graph(run["run_id"])
    return dict(run, progress=run_progress(run, graph, manifest_lengths()))


def cancel(run_id: str, by: CancelSource) -> tuple[str, str]:
    from flyte_lab.engine.api import cancel_run

    return cancel_run(run_id, _store(), by=by)


def executed_notebook(run: dict[str, Any], task: str) -> dict[str, Any]:
    """The executed notebook of the task's last attempt, as notebook JSON, wherever the artifacts live."""
    import json

    import fsspec

    info = run["tasks"].get(task)
    if info is None:
        raise ExecutedNotebookNotFound(f"run `{run['run_id']}` has no task `{task}`")
    url = info.get("output_notebook")
    if not url:
        raise ExecutedNotebookNotFound(f"task `{task}` of run `{run['run_id']}` has no executed notebook yet")
    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            content = json.load(fh)
    except FileNotFoundError:  # removed since, or its artifact store cleaned: gone, not our failure
        raise ExecutedNotebookNotFound(f"the executed notebook of task `{task}` of run `{run['run_id']}` is gone "
                                       f"(no file at {url})") from None
    return {"name": f"{task}-{run['run_id']}.ipynb", "content": untrusted(content)}


def task_log(run: dict[str, Any], task: str, since: int) -> dict[str, Any]:
    """The task's live output after row id `since` (`store.task_output`), with the task's state so a reader
    knows when to stop asking."""
    info = run["tasks"].get(task)
    if info is None:
        raise TaskNotFound(f"run `{run['run_id']}` has no task `{task}`")
    page = _store().task_output(run["run_id"], task, since=since)
    return {**page, "task": task, "status": info["status"]}


def untrusted(nb: Any) -> Any:
    """The notebook JSON `nb` without trust marks: Lab shows an untrusted notebook's HTML sanitised and runs
    none of its scripts. The file is the task's to write (its outputs, and anything it writes there later)."""
    if not isinstance(nb, dict):
        return nb
    cells = nb.get("cells")
    for part in [nb, *(cells if isinstance(cells, list) else [])]:
        if isinstance(part, dict) and isinstance(part.get("metadata"), dict):
            part["metadata"].pop("trusted", None)
    return nb


def list_schedules(root: str, notebook: str | None, now: datetime) -> list[dict[str, Any]]:
    from flyte_lab.scheduler.overview import overview

    try:
        rows = overview(_store(), now)
    except NoStore:
        return []
    if notebook is not None:
        rows = [r for r in rows if r["notebook"] == notebook]
    return [dict(r, path=path) for r in rows if (path := relative_to_root(root, r["notebook"])) is not None]


def confined_schedule(root: str, name: str) -> None:
    """Every route on one schedule goes through here first: one whose notebook is not under the root is
    not found, in the same words as one that does not exist."""
    hidden = ScheduleNotFound(f"no schedule `{name}` under the Jupyter root")
    try:
        schedule = _store().get_schedule(name)
    except (NoStore, ScheduleNotFound):
        raise hidden from None
    if relative_to_root(root, schedule["notebook"]) is None:
        raise hidden


def add_schedule(root: str, body: Any, now: datetime) -> dict[str, Any]:
    """`schedule add` of a POST body: the spec checked as the CLI checks it, its notebook under the root."""
    from flyte_lab.scheduler.spec import ScheduleSpec

    spec = ScheduleSpec.parse(body, now)
    path = resolve_notebook(root, spec.path)
    row = spec.model_copy(update={"path": str(path)}).row()
    _store(create=True).add_schedule(dict(row))
    found = [s for s in list_schedules(root, None, now) if s["name"] == row["name"]]
    return found[0]


def remove_schedule(name: str) -> None:
    _store().remove_schedule(name)


def pause_schedule(name: str, paused: bool) -> None:
    _store().set_schedule_paused(name, paused)


def preview(query: dict[str, str], now: datetime) -> FirePreview:
    """The next fire times of a schedule not saved yet (the form shows them before saving), checked as saving it is:
    the timing fields of the query (`cron`, `every`, `timezone`, `start`; any other argument is not read)."""
    from flyte_lab.scheduler.spec import ScheduleTiming

    when = ScheduleTiming.parse({k: v for k, v in query.items() if k in ScheduleTiming.model_fields}, now).when
    return FirePreview(timezone=when.timezone, fire_times=[f.astimezone(when.tz).isoformat() for f in when.fires])


@functools.cache
def schedule_spec() -> dict[str, Any]:
    """The schedule spec's JSON Schema: the sidebar's schedule form takes its defaults, choices and bounds."""
    from flyte_lab.scheduler.spec import ScheduleSpec

    return ScheduleSpec.model_json_schema()
