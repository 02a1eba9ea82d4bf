"""Semantics users rely on, end to end on a real local cluster: secrets reach only their task, a retry says
why, progress counts map-over elements, typed parameters survive a resume, map-over of setup-cell
dataclasses never decodes on the driver, a whole-attempt timeout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.pg_server import query
from tests.test_engine_run import flyte, store_of, write_notebook

pytestmark = pytest.mark.cluster
SECRET = "tok-6b1f0c2e"


def test_a_secret_reaches_only_the_task_that_declares_it(tmp_path: Path, home: Path) -> None:
    nb = write_notebook(
        tmp_path / "secrets.ipynb",
        "%%flyte_setup\nimport os",
        "%%flyte_task owner() -> seen: int --env TOKEN=$FLYTE_TEST_SECRET\nseen = len(os.environ['TOKEN'])",
        # the body compares hashes: the secret itself must not appear in the notebook
        "%%flyte_task other() -> leaked: list[str]\nimport hashlib\n"
        "leaked = sorted(k for k, v in os.environ.items() if k in ('TOKEN', 'FLYTE_TEST_SECRET')\n"
        f"    or hashlib.sha256(v.encode()).hexdigest() == {hashlib.sha256(SECRET.encode()).hexdigest()!r})",
    )
    proc = flyte(home, "run", str(nb), "--json", env={"FLYTE_TEST_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(flyte(home, "outputs", json.loads(proc.stdout)["run_id"], "--json").stdout)
    assert outputs == {"owner": {"seen": len(SECRET)}, "other": {"leaked": []}}
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_retry_is_printed_with_its_reason_and_progress_counts_elements(tmp_path: Path, home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "retry.ipynb",
        "%%flyte_task fetch(marks: str) -> items: list[int] --retries 2\n"
        "import os\n"
        "if not os.path.exists(os.path.join(marks, 'tried')):\n"
        "    open(os.path.join(marks, 'tried'), 'w').close()\n"
        "    raise ConnectionError('upstream said 503')\n"
        "items = [1, 2, 3]",
        "%%flyte_task double(items: int) -> doubled: int --map-over items\ndoubled = items * 2",
        parameters=f"marks = {str(marks)!r}",
    )
    proc = flyte(home, "run", str(nb))
    assert proc.returncode == 0, proc.stderr
    assert "fetch: attempt 1 failed: ConnectionError: upstream said 503; retrying (2/3)" in proc.stderr

    from flyte_lab.engine.api import run_notebook

    seen: list[Any] = []
    (marks / "tried").unlink()
    record = run_notebook(str(nb), {}, on_change=seen.append)
    assert record["status"] == "succeeded"
    assert all(0 <= p.done <= p.total for p in seen)
    assert (seen[-1].done, seen[-1].total) == (4, 4)  # fetch + three elements of double


def test_typed_parameters_survive_a_resume(tmp_path: Path, home: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "dates.ipynb",
        "%%flyte_setup\nimport datetime as dt\nimport os\nfrom pathlib import Path",
        "%%flyte_task when(day: dt.date, folder: Path, marks: str) -> text: str\n"
        "if not os.path.exists(os.path.join(marks, 'fixed')):\n"
        "    raise RuntimeError('not yet')\n"
        "text = f'{day.isoformat()} {folder.name}'",
        parameters=f"marks = {str(marks)!r}\nday = dt.date(2020, 1, 1)\nfolder = Path('.')",
    )
    data = tmp_path / "data"
    data.mkdir()
    first = flyte(home, "run", str(nb), "-p", "day=2024-01-02", "-p", f"folder={data}", "--json")
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    (marks / "fixed").touch()
    resumed = flyte(home, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(flyte(home, "outputs", run_id, "--json").stdout)["when"]["text"] == "2024-01-02 data"


def test_map_over_setup_cell_dataclasses(tmp_path: Path, home: Path) -> None:
    nb = write_notebook(
        tmp_path / "points.ipynb",
        "%%flyte_setup\nfrom dataclasses import dataclass\n\n@dataclass\nclass Point:\n    x: int\n    y: int",
        "%%flyte_task make(n: int) -> points: list[Point]\npoints = [Point(i, i + 1) for i in range(n)]",
        "%%flyte_task shift(points: Point) -> moved: Point --map-over points\nmoved = Point(points.x + 10, points.y)",
        "%%flyte_task total(moved: list[Point]) -> s: int\ns = sum(p.x + p.y for p in moved)",
        parameters="n = 3",
    )
    proc = flyte(home, "run", str(nb), "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["status"] == "succeeded"
    assert json.loads(flyte(home, "outputs", run["run_id"], "--json").stdout)["total"]["s"] == 30 + 3 + 6
    with store_of(home) as store:
        attempts = store.get_run(run["run_id"])["attempts_detail"]["shift"]
    assert [a["status"] for a in attempts] == ["succeeded"]


def test_timeout_is_the_whole_attempt_not_one_cell(tmp_path: Path, home: Path) -> None:
    nb = write_notebook(
        tmp_path / "timeout.ipynb",
        "%%flyte_setup\nimport time\ntime.sleep(2.5)",
        "%%flyte_task slow() -> x: int --timeout 4s\ntime.sleep(2.5)\nx = 1",
    )
    proc = flyte(home, "run", str(nb), "--json")
    assert proc.returncode == 1, proc.stderr
    task = json.loads(proc.stdout)["tasks"]["slow"]
    assert task["status"] == "failed"
    assert task["error"]["type"] == "TaskTimeout"


def test_an_unexpected_driver_error_ends_the_run_failed_with_it_recorded(tmp_path: Path, home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.errors import DriverError

    nb = write_notebook(tmp_path / "crash.ipynb", "%%flyte_task a() -> x: int --cache\nx = 1",
                        "%%flyte_task b(x: int) -> y: int\ny = x")

    def explode(progress: Any) -> None:
        if progress.status.get("a") == "running":
            raise RuntimeError("a monitoring hook broke")

    with pytest.raises(DriverError, match="a monitoring hook broke"):
        run_notebook(str(nb), {}, on_change=explode)
    with store_of(home) as store:
        (summary,) = store.list_runs()
        run = store.get_run(summary["run_id"])
    assert run["status"] == "failed"
    assert run["error"]["type"] == "DriverError" and "a monitoring hook broke" in run["error"]["message"]
    assert {t["status"] for t in run["tasks"].values()} <= {"failed", "skipped"}
    assert query(home, "SELECT count(*) FROM cache_locks") == [(0,)]


def test_resume_keeps_no_cache(tmp_path: Path, home: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "nocache.ipynb",
        "%%flyte_task t(marks: str) -> x: int --cache\n"
        "import os\nif not os.path.exists(os.path.join(marks, 'ok')):\n    raise ValueError('not ok')\nx = 1",
        parameters=f"marks = {str(marks)!r}",
    )
    (marks / "ok").touch()
    assert flyte(home, "run", str(nb)).returncode == 0  # fills the cache
    (marks / "ok").unlink()
    first = flyte(home, "run", str(nb), "--no-cache", "--json")
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    again = flyte(home, "resume", run_id, "--json")
    task = json.loads(again.stdout)["tasks"]["t"]
    # with the cache the resume would have been a hit; --no-cache was kept, so the task ran (and failed) again
    assert (task["status"], task["attempts"]) == ("failed", 2)


def test_in_process_runs_do_not_share_the_callers_event_loop(tmp_path: Path, home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """In a notebook (%flyte_run) or the Python API, the caller's thread already has an event loop that
    jupyter_core remembers; parallel attempts on the in-process workers must each run on their own."""
    from jupyter_core.utils import ensure_event_loop

    from flyte_lab.engine.api import run_notebook

    ensure_event_loop()  # what an earlier nbclient call in this thread leaves behind
    nb = write_notebook(tmp_path / "parallel.ipynb",
                        *(f"%%flyte_task t{i}() -> x{i}: int\nimport time\ntime.sleep(0.5)\nx{i} = {i}"
                          for i in range(4)))
    record = run_notebook(str(nb), {}, workers=2)
    assert record["status"] == "succeeded"
    assert {name: t["attempts"] for name, t in record["tasks"].items()} == {f"t{i}": 1 for i in range(4)}
