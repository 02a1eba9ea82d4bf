"""End-to-end runs on real LocalClusters, real kernels and papermill, real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.store import RunStore
from tests.conftest import CLI, NOTEBOOKS, cli_env
from tests.pg_server import store_exists, store_url

pytestmark = pytest.mark.cluster
SECRET = "s3cr3t-value-9f8e7d"


def write_notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell(c) for c in cells]
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.insert(1, cell)
    nbformat.write(nb, path)
    return path


def flyte(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = cli_env(home)
    full.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full, timeout=300)


def store_of(home: Path) -> RunStore:
    return RunStore(store_url(home))


def test_mixed_pipeline_values_failures_and_secrets(tmp_path: Path, home: Path) -> None:
    nb = write_notebook(
        tmp_path / "mixed.ipynb",
        "%%flyte_setup\nimport os\nimport numpy as np\nimport pandas as pd\n",
        "%%flyte_task make(n: int) -> (frame: pd.DataFrame, arr: np.ndarray)\n"
        "frame = pd.DataFrame({'x': list(range(n))}, index=[f'r{i}' for i in range(n)])\n"
        "arr = np.arange(n, dtype=float).reshape(n, 1)",
        "%%flyte_task summarise(frame: pd.DataFrame, arr: np.ndarray) -> (stats: dict[str, float], cols: list[str])\n"
        "stats = {'sum': float(frame['x'].sum()), 'arr': float(arr.sum())}\ncols = list(frame.columns)",
        "%%flyte_task boom(stats: dict[str, float]) -> later: int\n"
        "value = 1\nraise ValueError(f'bad stats {len(stats)}')\nlater = 2",
        "%%flyte_task after_boom(later: int) -> done: int\ndone = later",
        "%%flyte_task wrong_type() -> count: int\ncount = 'three'",
        "%%flyte_task uses_secret(n: int) -> token_len: int --env TOKEN=$FLYTE_TEST_SECRET\n"
        "token_len = len(os.environ['TOKEN'])\nprint('token length', token_len)",
        parameters="n = 4",
    )
    proc = flyte(home, "run", str(nb), "--json", env={"FLYTE_TEST_SECRET": SECRET})
    assert proc.returncode == 1, proc.stderr
    run = json.loads(proc.stdout)
    tasks = run["tasks"]
    assert run["status"] == "failed"
    assert {n: t["status"] for n, t in tasks.items()} == {
        "make": "succeeded", "summarise": "succeeded", "boom": "failed", "after_boom": "skipped",
        "wrong_type": "failed", "uses_secret": "succeeded"}
    error = tasks["boom"]["error"]
    assert (error["type"], error["cell"], error["line"]) == ("ValueError", 5, 3)
    assert "bad stats 2" in error["message"] and "raise ValueError" in error["traceback"]
    assert Path(tasks["boom"]["output_notebook"]).is_file()
    assert "is declared `int` but the value is `str` ('three')" in tasks["wrong_type"]["error"]["message"]

    outputs = json.loads(flyte(home, "outputs", run["run_id"], "--json").stdout)
    assert outputs["summarise"]["stats"] == {"sum": 6.0, "arr": 6.0}
    assert outputs["summarise"]["cols"] == ["x"]
    assert outputs["uses_secret"]["token_len"] == len(SECRET)
    assert "DataFrame 4x1" in outputs["make"]["frame"]

    # the secret reached the kernel but no notebook, store row, artifact or log
    leaks = [p for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert SECRET not in proc.stdout + proc.stderr


def test_retries_cache_and_map_over(tmp_path: Path, home: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "features.ipynb",
        "%%flyte_setup\nimport pathlib\n",
        "%%flyte_task flaky(marks: str) -> ok: bool --retries 1\n"
        "flag = pathlib.Path(marks) / 'flaky-failed-once'\n"
        "if not flag.exists():\n    flag.touch()\n    raise RuntimeError('first attempt fails')\nok = True",
        "%%flyte_task expensive(marks: str, ok: bool) -> base: int --cache\n"
        "(pathlib.Path(marks) / f'expensive-{len(list(pathlib.Path(marks).iterdir()))}').touch()\nbase = 10",
        "%%flyte_task square(items: int, base: int) -> sq: int --map-over items\nsq = items * items + base",
        "%%flyte_task total(sq: list[int]) -> s: int\ns = sum(sq)",
        parameters=f"marks = {str(marks)!r}\nitems = [1, 2, 3]",
    )
    first = flyte(home, "run", str(nb), "--json")
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["tasks"]["flaky"]["attempts"] == 2
    assert run["tasks"]["expensive"]["status"] == "succeeded"
    outputs = json.loads(flyte(home, "outputs", run["run_id"], "--json").stdout)
    assert outputs["square"]["sq"] == [11, 14, 19]
    assert outputs["total"]["s"] == 44
    detail = store_of(home).get_run(run["run_id"])["attempts_detail"]["flaky"]
    assert [(a["status"], a["kind"]) for a in detail] == [("failed", "user"), ("succeeded", None)]

    second = json.loads(flyte(home, "run", str(nb), "--json").stdout)
    assert second["tasks"]["expensive"]["status"] == "cached"
    assert len(list(marks.glob("expensive-*"))) == 1  # computed once, reused by the second run
    assert json.loads(flyte(home, "outputs", second["run_id"], "--json").stdout)["total"]["s"] == 44

    third = json.loads(flyte(home, "run", str(nb), "--json", "--no-cache").stdout)
    assert third["tasks"]["expensive"]["status"] == "succeeded"


@pytest.mark.parametrize(("args", "fragment"), [
    ([str(NOTEBOOKS / "type_mismatch.ipynb")], "error[type-mismatch]"),
    ([str(NOTEBOOKS / "not_json.ipynb")], "bad-notebook"),
    ([str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "nope=1"], "not a workflow input"),
    ([str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "n=ten"], "expects int"),
    ([str(NOTEBOOKS / "missing_input.ipynb")], "error[missing-input]"),
])
def test_bad_input_is_refused_and_nothing_is_stored(tmp_path: Path, home: Path, args: list[str], fragment: str) -> None:
    proc = flyte(home, "run", *args)
    assert proc.returncode == 2
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert not store_exists(home) or store_of(home).list_runs() == []
    assert not (home / "artifacts").exists() or not any((home / "artifacts").rglob("*.*"))


def test_the_quickstart_runs_end_to_end(tmp_path: Path, home: Path) -> None:
    example = Path(__file__).parent.parent / "example_notebooks" / "quickstart.ipynb"
    proc = flyte(home, "run", str(example))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("run ")
    run_id = proc.stdout.splitlines()[0].split()[1]
    outputs = json.loads(flyte(home, "outputs", run_id, "--json").stdout)
    assert outputs["summarize"]["summary"]["r2"] > 0.8
    assert os.path.isfile(store_of(home).get_run(run_id)["tasks"]["fit"]["output_notebook"])


def test_two_identical_concurrent_runs_compute_a_cached_task_once(tmp_path: Path, home: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "shared.ipynb",
        "%%flyte_setup\nimport pathlib\nimport time\nimport uuid\n",
        "%%flyte_task slow(marks: str) -> value: int --cache\n"
        "(pathlib.Path(marks) / f'computed-{uuid.uuid4().hex}').touch()\ntime.sleep(3)\nvalue = 7",
        parameters=f"marks = {str(marks)!r}",
    )
    env = cli_env(home)
    procs = [subprocess.Popen([*CLI, "run", str(nb), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    statuses = sorted(json.loads(out)["tasks"]["slow"]["status"] for out, _ in results)
    assert statuses == ["cached", "succeeded"]
    assert len(list(marks.iterdir())) == 1


def test_the_python_api_runs_and_reads_back(home: Path) -> None:
    import flyte_lab

    record = flyte_lab.run(str(NOTEBOOKS / "map_over.ipynb"), {"items": "[2, 3]"})
    assert record["status"] == "succeeded"
    assert record["tasks"]["total"]["outputs"]["s"]["preview"] == "13"
    assert flyte_lab.get_run(record["run_id"])["run_id"] == record["run_id"]


def test_a_task_no_worker_can_hold_fails_instead_of_waiting_forever(tmp_path: Path, home: Path) -> None:
    nb = write_notebook(tmp_path / "huge.ipynb", "%%flyte_task huge() -> x: int --cpu 4096\nx = 1",
                        "%%flyte_task small() -> y: int --cpu 1\ny = 2")
    proc = flyte(home, "run", str(nb), "--json")
    assert proc.returncode == 1, proc.stderr
    tasks = json.loads(proc.stdout)["tasks"]
    assert tasks["huge"]["error"]["type"] == "Unschedulable"
    assert "CPU=4096" in tasks["huge"]["error"]["message"]
    assert tasks["small"]["status"] == "succeeded"
