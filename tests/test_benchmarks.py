"""The peer benchmark's harness works: its inputs compute the right answers, its report says why a cell failed,
and one small real run (flyte_lab + the floor on the fan-out, --repeat 1) writes the table, JSON line and plot.

The peers' venvs are not built here (minutes, network): `python benchmarks/bench_peers.py` does that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import flyte_lab

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import peer_inputs  # noqa: E402
import peer_report  # noqa: E402
from workloads import WORKLOADS, workload_from_json  # noqa: E402


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_round_trips_through_json(name):
    workload = WORKLOADS[name]
    assert workload_from_json(workload.to_json()) == workload


# the CPU-bound workload burns seconds of CPU by design; its code is the fan-out's shape
@pytest.mark.parametrize("name", sorted(set(WORKLOADS) - {"cpu"}))
def test_plain_notebook_computes_the_expected_result(name, tmp_path):
    workload = WORKLOADS[name]
    peer_inputs.write_plain(workload, tmp_path / "plain.ipynb")
    namespace: dict = {}
    for cell in nbformat.read(tmp_path / "plain.ipynb", as_version=4).cells:
        exec(cell.source, namespace)  # the last cell asserts the result
    assert namespace[workload.result] == workload.expected


def test_wrong_result_is_an_error():
    workload = WORKLOADS["fanout"]
    with pytest.raises(AssertionError, match="expected 28"):
        workload.check(27)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_flyte_notebook_validates(name, tmp_path):
    workload = WORKLOADS[name]
    peer_inputs.write_flyte(workload, tmp_path / "flyte.ipynb")
    workflow = flyte_lab.validate(str(tmp_path / "flyte.ipynb"))
    assert workflow.diagnostics == []
    assert sorted(workflow.tasks) == sorted(t.name for t in workload.tasks)


def test_report_puts_the_reason_in_a_failed_cell():
    workload = WORKLOADS["map200"]
    measured = {
        ("map200", "floor"): (4.0, "", [2.0]),
        ("map200", "flyte_lab"): (14.1, "", [10.0]),
        ("map200", "ploomber"): (None, "install failed: no matching distribution", []),
    }
    rows = peer_report.rows([workload], ["flyte_lab", "floor", "ploomber"], measured)
    flyte = rows[0]
    assert flyte.ratio == pytest.approx(14.1 / 4.0)
    assert flyte.overhead_ms == pytest.approx((14.1 - 4.0) / 202 * 1000)
    assert flyte.map_rate == pytest.approx(20.0)
    table = peer_report.markdown(rows, repeat=1)
    assert "| 3.52 | 50 | map: 20.0 elements/s |" in table
    assert "| Ploomber, Parallel |  |  |  | install failed: no matching distribution |" in table


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_smallest_real_run_writes_table_json_and_plot(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_peers.py"), "--repeat", "1", "--workloads", "fanout",
         "--tools", "flyte_lab", "--results", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=230,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (tmp_path / "peers.md").read_text()
    assert "| flyte_lab, warm executor |" in table and "| Dask exec floor |" in table
    (record,) = [json.loads(line) for line in (tmp_path / "peers.jsonl").read_text().splitlines()]
    walls = {row["tool"]: row for row in record["rows"]}
    assert set(walls) == {"flyte_lab", "floor"}
    assert walls["floor"]["wall_s"] > 2.0  # 8 x 0.5 s on 2 workers cannot take less
    assert walls["flyte_lab"]["ratio"] == pytest.approx(walls["flyte_lab"]["wall_s"] / walls["floor"]["wall_s"], 1e-3)
    assert (tmp_path / "peers.png").read_bytes().startswith(b"\x89PNG")
