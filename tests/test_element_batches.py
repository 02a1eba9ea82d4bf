"""Map-over elements run in batches: several consecutive elements per kernel, each in the namespace the setup
cells left, each with its own inputs, outputs, live output, `--timeout` budget and (when it fails) its own
error, executed notebook and `flyte-lab debug` inputs. Real LocalCluster, kernels, papermill and SQLite."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyte_lab.engine.element_batches import MAX_BATCH, PER_SLOT, batch_size, batches
from flyte_lab.errors import HeaderError
from flyte_lab.graph.header import format_header, parse_header
from tests.conftest import CLI, cli_env
from tests.test_engine_run import store_of, write_notebook


# -- the grouping ------------------------------------------------------------------------------------------------
@given(st.integers(0, 5000), st.integers(1, 64))
def test_batches_cover_every_element_once_in_order(elements: int, size: int) -> None:
    groups = batches(elements, size)
    assert [i for g in groups for i in g] == list(range(elements))
    assert all(len(g) == size for g in groups[:-1]) and all(1 <= len(g) <= size for g in groups)


@given(st.integers(0, 5000), st.one_of(st.none(), st.integers(1, 64)), st.one_of(st.none(), st.integers(1, 64)))
def test_the_batch_size_keeps_every_slot_busy_and_is_one_where_workers_scale(elements: int, slots: int | None,
                                                                             asked: int | None) -> None:
    size = batch_size(elements, slots, asked)
    if asked is not None:
        assert size == asked  # `--batch N` wins everywhere
    elif slots is None:
        assert size == 1  # tcp:// and k8s: workers scale with the queued tasks
    else:
        assert 1 <= size <= MAX_BATCH
        # at least PER_SLOT batches per slot while the cap allows, and none when there are few elements
        assert len(batches(elements, size)) >= min(PER_SLOT * slots, elements, -(-elements // MAX_BATCH))
        if elements <= PER_SLOT * slots:
            assert size == 1


def test_the_batch_option_reads_back_and_needs_a_map_over() -> None:
    spec = parse_header("%%flyte_task sq(xs: int) -> y: int --map-over xs --batch 8")
    assert (spec.options.map_over, spec.options.batch, spec.options.as_json()["batch"]) == ("xs", 8, 8)
    assert parse_header(format_header(spec)).options == spec.options
    for bad, said in [("--map-over xs --batch 0", "whole number >= 1"), ("--map-over xs --batch two", ">= 1"),
                      ("--batch 4", "needs `--map-over`")]:
        with pytest.raises(HeaderError, match=said):
            parse_header(f"%%flyte_task sq(xs: int) -> y: int {bad}")


# -- runs --------------------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_batched_map_gives_each_element_a_fresh_namespace_its_outputs_and_its_own_lines(
        tmp_path: Path, home: Path) -> None:
    from flyte_lab.engine.api import run_notebook

    nb = write_notebook(
        tmp_path / "batched.ipynb",
        "%%flyte_setup\nimport math\nBASE = 10",
        "%%flyte_task make() -> xs: list[int]\nxs = list(range(7))",
        # a name an earlier element bound is gone; the setup's names are back even when rebound
        "%%flyte_task sq(xs: int) -> y: int --map-over xs --batch 3\n"
        "assert 'left' not in globals(), 'an earlier element leaked'\nassert BASE == 10\n"
        "left = xs\nBASE = -1\nprint(f'element {xs}')\ny = xs * xs + int(math.sqrt(100))",
        "%%flyte_task total(y: list[int]) -> t: int\nt = sum(y)",
    )
    record = run_notebook(str(nb), {}, cluster="local", workers=2)
    assert record["status"] == "succeeded", record["tasks"]["sq"]["error"]
    assert record["tasks"]["total"]["outputs"]["t"]["preview"] == str(sum(i * i + 10 for i in range(7)))
    folder = home / "artifacts" / "runs" / record["run_id"] / "sq"
    assert sorted(p.name for p in folder.glob("*.ipynb")) == sorted([
        "attempt-1-items-0-2.ipynb", "attempt-1-items-3-5.ipynb", "attempt-1-item-6.ipynb"])
    done = subprocess.run([*CLI, "logs", record["run_id"]], env=cli_env(home), capture_output=True, text=True,
                          timeout=60)
    lines = [tuple(part.strip() for part in line.split("|")) for line in done.stdout.splitlines()
             if line.startswith("sq")]
    assert sorted(lines) == sorted((f"sq[{i}]", f"element {i}") for i in range(7)), done.stdout
    # its usage: the batches' CPU summed, measured once per kernel
    assert record["tasks"]["sq"]["usage"]["cpu_s"] > 0


@pytest.mark.cluster
def test_a_failing_element_fails_its_map_at_its_own_line_and_debug_loads_that_elements_input(
        tmp_path: Path, home: Path) -> None:
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.kernel_ext.triage import load_inputs, read_attempt

    nb = write_notebook(
        tmp_path / "batched_fail.ipynb",
        "%%flyte_task make() -> xs: list[int]\nxs = [3, 4, 5, 6, 7, 8]",
        "%%flyte_task inv(xs: int) -> y: float --map-over xs --batch 4\n"
        "shift = xs - 5\ny = 1 / shift",
    )
    record = run_notebook(str(nb), {}, cluster="local", workers=1)
    task = record["tasks"]["inv"]
    assert (record["status"], task["status"]) == ("failed", "failed")
    error = task["error"]
    assert (error["type"], error["cell"], error["line"]) == ("ZeroDivisionError", 2, 3), error
    assert task["output_notebook"].endswith("attempt-1-items-0-3.ipynb")
    with store_of(home) as store:
        attempt = read_attempt(store, record["run_id"], "inv")
    assert attempt.map_index == 2 and attempt.source_line() == "y = 1 / shift"
    assert attempt.header().startswith("%%flyte_task inv(xs: int)")
    assert load_inputs(attempt, {}) == {"xs": [5]}  # the failing element, as the task cell reads it


@pytest.mark.cluster
def test_each_element_of_a_batch_has_its_own_timeout_budget(tmp_path: Path, home: Path) -> None:
    from flyte_lab.engine.api import run_notebook

    nb = write_notebook(
        tmp_path / "batched_time.ipynb",
        "%%flyte_setup\nimport time",
        "%%flyte_task make() -> xs: list[float]\nxs = [0.8, 0.8, 0.8, 0.8]",
        # four elements of 0.8 s in one kernel: 3.2 s in all, each well inside its own 2 s
        "%%flyte_task nap(xs: float) -> y: float --map-over xs --batch 4 --timeout 2s\ntime.sleep(xs)\ny = xs",
    )
    record = run_notebook(str(nb), {}, cluster="local", workers=1)
    assert record["status"] == "succeeded", record["tasks"]["nap"]["error"]

    slow = write_notebook(
        tmp_path / "batched_slow.ipynb",
        "%%flyte_setup\nimport time",
        "%%flyte_task make() -> xs: list[float]\nxs = [0.1, 30.0, 0.1]",
        "%%flyte_task nap(xs: float) -> y: float --map-over xs --batch 3 --timeout 2s\ntime.sleep(xs)\ny = xs",
    )
    record = run_notebook(str(slow), {}, cluster="local", workers=1)
    task = record["tasks"]["nap"]
    assert (task["status"], task["error"]["type"]) == ("failed", "TaskTimeout"), task["error"]
    assert task["duration_s"] < 20


@pytest.mark.cluster
def test_a_local_cluster_batches_a_long_map_by_itself_and_a_short_one_not(tmp_path: Path, home: Path) -> None:
    from flyte_lab.engine.api import run_notebook

    nb = write_notebook(
        tmp_path / "auto.ipynb",
        "%%flyte_task make() -> xs: list[int]\nxs = list(range(12))",
        "%%flyte_task sq(xs: int) -> y: int --map-over xs\ny = xs * xs",
        "%%flyte_task total(y: list[int]) -> t: str\nt = repr(y)",
        "%%flyte_task make3() -> zs: list[int]\nzs = [1, 2, 3]",
        "%%flyte_task dbl(zs: int) -> w: int --map-over zs\nw = 2 * zs",
    )
    record = run_notebook(str(nb), {}, cluster="local", workers=1)
    assert record["status"] == "succeeded"
    assert record["tasks"]["total"]["outputs"]["t"]["preview"] == repr(repr([i * i for i in range(12)]))
    runs = home / "artifacts" / "runs" / record["run_id"]
    # 12 elements on 1 slot: 4 batches of 3; 3 elements: a kernel each, as before batches
    assert sorted(p.name for p in (runs / "sq").glob("*.ipynb")) == [
        f"attempt-1-items-{a}-{a + 2}.ipynb" for a in (0, 3, 6, 9)]
    assert sorted(p.name for p in (runs / "dbl").glob("*.ipynb")) == [f"attempt-1-item-{i}.ipynb" for i in range(3)]
    executed = json.loads((runs / "sq" / "attempt-1-items-3-5.ipynb").read_text())
    tags = [t for c in executed["cells"] for t in c["metadata"].get("tags", []) if t.startswith("flyte-element-")]
    assert tags == [f"flyte-element-{i}" for i in (3, 3, 4, 4, 5, 5)]
