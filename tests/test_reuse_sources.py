"""Where a partial run's unselected tasks come from (`engine/reuse_sources.py`), pure: candidate runs as plain
data in, a source per task or one refusal out. Plus `artifact_present` against a real artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.engine.cache_keys import cache_key
from flyte_lab.engine.reuse_sources import Candidate, artifact_present, plan_reuse
from flyte_lab.errors import SelectionRefused
from flyte_lab.graph.model import TypeRef, Workflow
from flyte_lab.graph.validate import validate_notebook


@pytest.fixture
def chain(tmp_path: Path) -> Workflow:
    """a -> b -> c, no workflow inputs."""
    nb = new_notebook(cells=[new_code_cell("%%flyte_setup\nimport os"),
                             new_code_cell("%%flyte_task a() -> x: int\nx = 1"),
                             new_code_cell("%%flyte_task b(x: int) -> y: int\ny = x + 10"),
                             new_code_cell("%%flyte_task c(y: int) -> z: int\nz = y * 2")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "chain.ipynb"
    nbformat.write(nb, path)
    wf = validate_notebook(str(path))
    assert not wf.diagnostics, wf.diagnostics
    return wf


def _run(wf: Workflow, run_id: str, y_hash: str) -> Candidate:
    """A full earlier run in which a gave x (the same content in every run) and b gave a y of its own."""
    outputs = {"a": {"x": {"uri": "file:///art/x.json", "content_hash": "hx", "codec": "json"}},
               "b": {"y": {"uri": f"file:///art/{y_hash}.json", "content_hash": y_hash, "codec": "json"}}}
    tasks = {"a": {"status": "succeeded", "attempts": 1, "cache_key": cache_key(wf, "a", {})},
             "b": {"status": "succeeded", "attempts": 1, "cache_key": cache_key(wf, "b", {"x": "hx"})},
             "c": {"status": "succeeded", "attempts": 1, "cache_key": cache_key(wf, "c", {"y": y_hash})}}
    return Candidate(run_id=run_id, tasks=tasks, outputs_of=lambda task: outputs.get(task, {}), reused={})


def _plan(wf: Workflow, candidates: list[Candidate], deleted: set[str], named: str | None = None) -> dict[str, Any]:
    found = plan_reuse(wf, ["a", "b"], ["b"], candidates, {}, present=lambda entry: entry["uri"] not in deleted,
                       selection="--only c", named=named)
    return {"sources": {t: r.run_id for t, r in found.items()}, "y": found["b"].outputs["y"]["uri"]}


def test_a_run_whose_needed_artifacts_were_deleted_is_passed_over_for_an_older_one(chain: Workflow) -> None:
    newest, older = _run(chain, "run-new", "hy2"), _run(chain, "run-old", "hy1")
    kept = _plan(chain, [newest, older], deleted=set())
    assert kept["sources"] == {"a": "run-new", "b": "run-new"}
    skipped = _plan(chain, [newest, older], deleted={"file:///art/hy2.json"})
    assert skipped["sources"] == {"a": "run-old", "b": "run-old"} and skipped["y"] == "file:///art/hy1.json"


def test_when_no_run_has_the_artifacts_the_refusal_says_they_are_gone(chain: Workflow) -> None:
    newest, older = _run(chain, "run-new", "hy2"), _run(chain, "run-old", "hy1")
    with pytest.raises(SelectionRefused) as refused:
        _plan(chain, [newest, older], deleted={"file:///art/hy2.json", "file:///art/hy1.json"})
    assert refused.value.message == (
        "--only c: cannot take the outputs of task `b` from an earlier run: the artifact of its output y was "
        "deleted from the artifact store (run run-new, the newest that has it); include it with --from b or name "
        "a run with --reuse RUN_ID")
    with pytest.raises(SelectionRefused) as refused:  # a's x is gone everywhere (the same content in both runs)
        _plan(chain, [newest, older], deleted={"file:///art/x.json"}, named=None)
    assert "task `a`" in refused.value.message and "output x was deleted" in refused.value.message
    assert "--from a" in refused.value.message
    with pytest.raises(SelectionRefused) as refused:  # --reuse names the run: no older one is tried
        _plan(chain, [newest], deleted={"file:///art/hy2.json"}, named="run-new")
    assert "output y was deleted from the artifact store (run run-new);" in refused.value.message


def test_a_stale_run_is_refused_for_its_staleness_without_asking_the_artifact_store(chain: Workflow) -> None:
    stale = _run(chain, "run-stale", "hy1")
    stale.tasks["b"]["cache_key"] = "an older b"
    asked: list[Any] = []
    with pytest.raises(SelectionRefused) as refused:
        plan_reuse(chain, ["a", "b"], ["b"], [stale], {}, present=lambda entry: asked.append(entry) is None,
                   selection="--only c")
    assert "its code, setup cells or inputs changed since run run-stale" in refused.value.message
    assert asked == []  # a run that cannot give b costs no look-up in the store


def test_artifact_present_checks_the_store_and_a_lists_elements(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"), b"k" * 32)
    one = store.put(7, TypeRef("int"))
    listed = store.put_elements([1, 2, 3], TypeRef("int"))  # a map-over task's list: a manifest of elements
    present = artifact_present(store)
    entries = {name: {"uri": ref.uri, "codec": ref.codec} for name, ref in (("one", one), ("listed", listed))}
    assert listed.codec == "manifest" and present(entries["one"]) and present(entries["listed"])
    assert not present({"uri": "file:///elsewhere/x.json", "codec": "json"})  # not this store's: unreadable here
    Path(one.uri.removeprefix("file://")).unlink()
    assert not present(entries["one"])
    Path(store.manifest_elements(listed.uri)[1].removeprefix("file://")).unlink()
    assert not present(entries["listed"])  # one element gone is the list gone
