"""What task code writes is decoded only in task kernels: never in the driver (nor its Dask workers, which are
threads of the driver's process on a local cluster), even when a cached list must be split for a map-over; and
what a kernel's result file claims is not taken on trust."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, NOTEBOOKS, cli_env
from tests.process_helpers import write_notebook

pytestmark = pytest.mark.cluster


def _run(home: Path, notebook: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`flyte-lab run NOTEBOOK ARGS --json` as its own process: (the driver's pid, the run)."""
    proc = subprocess.Popen([*CLI, "run", str(notebook), *args, "--json"],
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return proc.pid, json.loads(out)


def _loads(marks: Path) -> list[dict[str, Any]]:
    """One entry per time a Marker was unpickled: by which pid, in which IPython shell (None: no kernel)."""
    return [json.loads(line) for line in marks.read_text().splitlines()] if marks.exists() else []


def test_a_cached_pickled_list_is_split_for_a_map_over_in_a_kernel_never_in_the_driver(tmp_path: Path,
                                                                                      home: Path) -> None:
    marks = tmp_path / "marks.jsonl"
    # a run that reads the list whole: `make` caches it as one pickle
    _, first = _run(home, NOTEBOOKS / "pickled_marker_list.ipynb", "-p", f"marks={marks}")
    assert first["tasks"]["make"]["status"] == "succeeded"
    assert first["tasks"]["make"]["outputs"]["items"]["uri"].endswith(".pkl")  # one pickle, no manifest
    assert first["tasks"]["count"]["outputs"]["k"]["preview"] == "3"
    loaded_before = len(_loads(marks))
    assert loaded_before >= 1  # `count` loaded it, in its kernel

    # the same `make`, now mapped over: the cached pickle must be split without the driver loading it
    driver, second = _run(home, NOTEBOOKS / "map_over_pickled_marker.ipynb", "-p", f"marks={marks}")
    assert second["tasks"]["make"]["status"] == "cached"
    assert second["tasks"]["make"]["outputs"]["items"]["uri"] == first["tasks"]["make"]["outputs"]["items"]["uri"]
    assert second["tasks"]["double"]["outputs"]["doubled"]["preview"].startswith("[3 items")
    assert second["tasks"]["total"]["outputs"]["s"]["preview"] == "6"  # 0 + 2 + 4: every element, in order
    loads = _loads(marks)
    assert len(loads) > loaded_before  # the elements were loaded again, by someone
    assert [m for m in loads if m["pid"] == driver or m["shell"] is None] == []
    assert {m["shell"] for m in loads} <= {"ZMQInteractiveShell"}, loads


def test_an_output_type_is_recorded_as_declared_not_as_the_kernel_result_says(tmp_path: Path, home: Path) -> None:
    """`%flyte_load` evaluates the recorded type text in the user's kernel: a task must not be able to choose it."""
    honest, forged = b'"type": "int"', b'"type": "__import__(\'os\').getpid()"'
    nb = write_notebook(tmp_path / "forge.ipynb", "",
                        "%%flyte_task forge() -> n: int\n"
                        "import flyte_lab.engine.task_runtime as runtime\n"
                        "write = runtime.write_bytes\n"  # the result file, forged as it is written
                        f"runtime.write_bytes = lambda url, data: write(url, data.replace({honest!r}, {forged!r}))\n"
                        "n = 1")
    _, run = _run(home, nb)
    assert run["tasks"]["forge"]["outputs"]["n"]["type"] == "int"
