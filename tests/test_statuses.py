"""The one vocabulary of run and task states: the strings DESIGN.md's contract names, every palette covering them,
importable by the CLI and the kernel at no cost, and progress that counts successes only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flyte_lab.run_progress import element_counts, progress
from flyte_lab.statuses import (
    RUN_LIVE,
    RUN_TERMINAL,
    TASK_DONE,
    TASK_LIVE,
    TASK_TERMINAL,
    RunStatus,
    TaskStatus,
    vocabulary,
)
from tests.test_cli_imports import HEAVY

DESIGN = Path(__file__).resolve().parents[1] / "DESIGN.md"


def _documented(key_before: str) -> set[str]:
    """The `a|b|c` status values DESIGN.md's `show --json` example gives after `key_before`."""
    text = DESIGN.read_text(encoding="utf-8")
    found = re.search(re.escape(key_before) + r'.*?"status": "([a-z|]+)"', text, re.S)
    assert found, key_before
    return set(found.group(1).split("|"))


def test_the_values_are_the_strings_the_contract_names() -> None:
    assert {s.value for s in RunStatus} == _documented('{"run_id": "…"')
    assert {s.value for s in TaskStatus} == _documented('"tasks": {"fit": {')
    # a member is its string: stored, compared and dumped as before
    assert json.dumps({"status": TaskStatus.CACHED}) == '{"status": "cached"}'
    assert f"{RunStatus.CANCELLED}" == "cancelled" and RunStatus("failed") is RunStatus.FAILED


def test_the_sets_split_each_vocabulary() -> None:
    assert RUN_LIVE | RUN_TERMINAL == set(RunStatus) and not RUN_LIVE & RUN_TERMINAL
    assert TASK_LIVE | TASK_TERMINAL == set(TaskStatus) and not TASK_LIVE & TASK_TERMINAL
    assert TASK_DONE == {"succeeded", "cached", "reused"} and TASK_DONE < TASK_TERMINAL
    served = json.loads(json.dumps(vocabulary()))
    assert served["run"]["live"] == ["queued", "running"]
    assert set(served["task"]["done"]) == {"succeeded", "cached", "reused"}
    assert served["task"]["all"] == [s.value for s in TaskStatus]
    # a cancelled task ended (nothing reruns it but a resume) and is no progress; each canceller reads as itself
    assert "cancelled" in served["task"]["terminal"] and "cancelled" not in served["task"]["done"]
    assert served["cancelled_by"]["sidebar"] == "cancelled from the JupyterLab sidebar"
    assert len(set(served["cancelled_by"].values())) == len(served["cancelled_by"])


@pytest.mark.parametrize("palette", ["cli.report:STATUS_STYLES", "presentation.graph_render:STATUS_COLORS",
                                     "dashboard.table_rows:STATUS_COLORS"])
def test_every_palette_colours_every_state(palette: str) -> None:
    import importlib

    module, name = palette.split(":")
    colours = getattr(importlib.import_module(f"flyte_lab.{module}"), name)
    assert set(RunStatus) | set(TaskStatus) == set(colours)
    # a reused task (an earlier run's outputs) reads as neither a success of this run nor a cache hit
    assert colours[TaskStatus.REUSED] not in [colours[s] for s in TaskStatus if s != TaskStatus.REUSED]


def test_the_cli_and_the_kernel_import_it_at_no_cost() -> None:
    code = ("import sys; before = set(sys.modules); import flyte_lab.statuses; "
            "print('\\n'.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not {name.split(".")[0] for name in loaded} & HEAVY, loaded
    assert {name for name in loaded if name.startswith("flyte_lab.")} <= {"flyte_lab.errors", "flyte_lab.statuses"}


def test_progress_counts_successes_only_and_map_elements_once_known() -> None:
    failed = {"make": {"status": "succeeded"}, "total": {"status": "succeeded"}, "ratio": {"status": "failed"},
              "report": {"status": "skipped"}}
    assert progress(failed) == (2, 4)  # a failed run is never a full bar
    assert progress({"a": {"status": "cached"}, "b": {"status": "running"}}) == (1, 2)
    graph = {"tasks": [{"name": "make"}, {"name": "square", "options": {"map_over": "items"}},
                       {"name": "each", "options": {"map_over": "xs"}}],
             "edges": [["make", "square", "items"]], "workflow_inputs": {"xs": {"default": [1, 2]}}}
    run = {"params": {"xs": [1, 2, 3, 4]},
           "tasks": {"make": {"status": "succeeded", "outputs": {"items": {"uri": "file:///a.list"}}},
                     "square": {"status": "succeeded"}, "each": {"status": "failed"}}}
    sizes = element_counts(run, graph, lambda uri: {"file:///a.list": 3}[uri])
    assert sizes == {"square": 3, "each": 4}  # the producer's manifest; the launch's list, not the default
    assert progress(run["tasks"], sizes) == (4, 8)

    def no_manifest(uri: str) -> int:
        raise ValueError(uri)

    assert element_counts(run, graph, no_manifest) == {"each": 4}  # not a manifest yet: counts as one
