"""Partial runs (issue 19) end to end through the CLI on a real cluster and store: `--only`, `--from`, `--to`,
`--reuse`, their refusals, and the `reused` provenance `show --json` lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.cli.launch_commands import summary
from tests.pg_server import store_exists
from tests.test_engine_run import flyte, store_of, write_notebook

pytestmark = pytest.mark.cluster


def _chain(nb: Path, log: Path, c_body: str = "z = y * 2", b_body: str = "y = x + 10") -> Path:
    """a -> b -> c -> d; each task appends its name to `log` (what ran, in order)."""
    def task(header: str, body: str, name: str) -> str:
        return f"%%flyte_task {header}\nopen(log, 'a').write('{name}\\n')\n{body}"
    return write_notebook(
        nb,
        "%%flyte_setup\nimport os",
        task("a(log: str) -> x: int", "x = 1", "a"),
        task("b(x: int, log: str) -> y: int", b_body, "b"),
        task("c(y: int, log: str) -> z: int", c_body, "c"),
        task("d(z: int, log: str) -> w: str",
             "if os.path.exists(log + '.fail'):\n    raise RuntimeError('asked to fail')\nw = f'd{z}'", "d"),
        task("parts(x: int, log: str) -> items: list[int]", "items = [x, x + 1, x + 2]", "parts"),
        task("sq(items: int, log: str) -> squared: int --map-over items", "squared = items * items", "sq"),
        parameters=f"log = {str(log)!r}",
    )


def _ran(log: Path) -> list[str]:
    ran = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return ran


def _run(home: Path, nb: Path, *args: str) -> dict[str, Any]:
    proc = flyte(home, "run", str(nb), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _refused(home: Path, nb: Path, *args: str) -> str:
    runs_before = store_of(home).list_runs() if store_exists(home) else []
    proc = flyte(home, "run", str(nb), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (store_of(home).list_runs() if store_exists(home) else []) == runs_before  # nothing stored
    return proc.stderr


def _show(home: Path, run_id: str) -> dict[str, Any]:
    """The `show --json` object, read from the store (the CLI prints exactly this: checked once below)."""
    with store_of(home) as store:
        return json.loads(json.dumps(store.get_run(run_id)))


def test_only_from_to_and_reuse_on_a_chain(tmp_path: Path, home: Path) -> None:
    log = tmp_path / "ran.log"
    nb = _chain(tmp_path / "chain.ipynb", log)

    refusal = _refused(home, nb, "--only", "c")  # a fresh home: nothing to take b's outputs from
    assert "--only c: cannot take the outputs of task `b`" in refusal and "never ran" in refusal
    assert "--from a" in refusal and not store_exists(home)
    assert "--only zz: the notebook has no task `zz`" in _refused(home, nb, "--only", "zz")
    assert "--only cannot be combined with --from" in _refused(home, nb, "--only", "c", "--from", "b")

    full = _run(home, nb)
    assert sorted(_ran(log)) == ["a", "b", "c", "d", "parts", "sq", "sq", "sq"]

    _chain(nb, log, c_body="z = y * 3")  # edit c: --from c runs exactly c and d, on the full run's b
    edited = _run(home, nb, "--from", "c")
    assert _ran(log) == ["c", "d"]
    assert {t: s["status"] for t, s in edited["tasks"].items()} == {  # parts and sq are not tasks of this run
        "a": "reused", "b": "reused", "c": "succeeded", "d": "succeeded"}
    assert json.loads(flyte(home, "outputs", edited["run_id"], "--json").stdout)["d"] == {"w": "d33"}
    shown = json.loads(flyte(home, "show", edited["run_id"], "--json").stdout)
    assert shown == _show(home, edited["run_id"])
    assert shown["partial"] == {"select": {"only": [], "from": "c", "to": None}, "reuse": None,
                                "allow_changed": False}
    for task in ("a", "b"):  # every reused input with its source run, pointing at the same artifacts
        assert shown["tasks"][task]["reused_from"] == {"run_id": full["run_id"], "attempt": 1, "changed": False}
        assert shown["tasks"][task]["outputs"] == full["tasks"][task]["outputs"]
    assert shown["tasks"]["c"]["reused_from"] is None
    text = flyte(home, "show", edited["run_id"]).stdout
    assert "--from c" in text and f"reused: b from run {full['run_id']} (attempt 1)" in text
    assert full["run_id"] in flyte(home, "outputs", edited["run_id"]).stdout  # the "from run" column
    assert edited["partial"] == shown["partial"]  # `run --json` says so too
    debug = flyte(home, "debug", edited["run_id"], "b", "-o", str(tmp_path / "b.debug.ipynb"))
    assert debug.returncode == 0, debug.stderr  # a reused task is debugged from the run that computed it
    assert "y = x + 10" in (tmp_path / "b.debug.ipynb").read_text()

    (tmp_path / "ran.log.fail").touch()  # --only d fails once: its resume keeps the selection
    proc = flyte(home, "run", str(nb), "--json", "--only", "d")
    assert proc.returncode == 1, proc.stderr
    only_d = json.loads(proc.stdout)
    folder = home / "artifacts" / "runs" / only_d["run_id"]  # its own, not the folder of a run it reused from
    assert f"executed notebooks: {folder}" in summary(_show(home, only_d["run_id"]))
    assert _ran(log) == ["d"]
    (tmp_path / "ran.log.fail").unlink()
    proc = flyte(home, "resume", only_d["run_id"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert _ran(log) == ["d"]
    assert {t: s["status"] for t, s in json.loads(proc.stdout)["tasks"].items()} == {
        "a": "reused", "b": "reused", "c": "reused", "d": "succeeded"}
    assert _show(home, only_d["run_id"])["tasks"]["c"]["reused_from"]["run_id"] == edited["run_id"]
    assert _show(home, only_d["run_id"])["tasks"]["a"]["reused_from"]["run_id"] == full["run_id"]

    mapped = _run(home, nb, "--only", "sq")  # a map-over task alone fans out over the reused list
    assert _ran(log) == ["sq", "sq", "sq"] and mapped["tasks"]["parts"]["status"] == "reused"
    assert json.loads(flyte(home, "outputs", mapped["run_id"], "--json").stdout)["sq"] == {"squared": [1, 4, 9]}

    to_b = _run(home, nb, "--to", "b")
    assert _ran(log) == ["a", "b"] and set(to_b["tasks"]) == {"a", "b"}

    named = _run(home, nb, "--only", "c", "--reuse", full["run_id"])  # not the newest: the one named
    assert _ran(log) == ["c"]
    assert _show(home, named["run_id"])["tasks"]["b"]["reused_from"]["run_id"] == full["run_id"]

    _chain(nb, log, c_body="z = y * 3", b_body="y = x + 20")  # edit b: c cannot read a stale b
    refusal = _refused(home, nb, "--only", "c")
    assert "cannot take the outputs of task `b`" in refusal
    # the newest run with b reused it from the full run, which computed the stale output
    assert f"its code, setup cells or inputs changed since run {full['run_id']}" in refusal

    proc = flyte(home, "resume", only_d["run_id"])  # its reused b is stale now: refused, not rerun or used
    assert proc.returncode == 2 and f"run `{only_d['run_id']}` reused task `b`, whose outputs are stale" in proc.stderr

    refusal = _refused(home, nb, "--only", "c", "--reuse", full["run_id"])
    assert f"since run {full['run_id']}" in refusal and "--allow-changed" in refusal
    taken = _run(home, nb, "--only", "c", "--reuse", full["run_id"], "--allow-changed")
    assert _ran(log) == ["c"]
    assert json.loads(flyte(home, "outputs", taken["run_id"], "--json").stdout)["c"] == {"z": 33}  # old b: 11
    shown = _show(home, taken["run_id"])
    assert shown["tasks"]["b"]["reused_from"] == {"run_id": full["run_id"], "attempt": 1, "changed": True}
    assert shown["partial"]["reuse"] == full["run_id"] and shown["partial"]["allow_changed"] is True


def test_flyte_run_takes_the_same_selection_in_a_kernel(tmp_path: Path, home: Path) -> None:
    from nbformat.v4 import new_code_cell, new_notebook

    from tests.test_widget import errors_of, execute, pipeline

    path = pipeline(tmp_path / "pipe.ipynb", divisor="2.0")
    nb = execute(new_notebook(cells=[
        new_code_cell("%load_ext flyte_lab"),
        new_code_cell(f"%flyte_run {path} --only total"),  # nothing ran yet: make's list comes from nowhere
        new_code_cell(f"%flyte_run {path} --only total --to make"),
        new_code_cell(f"%flyte_run {path} --to total"),
        new_code_cell(f"%flyte_run {path} --only total"),
    ]), tmp_path)
    errors = errors_of(nb)
    assert len(errors) == 2, errors
    assert errors[0].startswith("UsageError: --only total: cannot take the outputs of task `make`")
    assert errors[1].startswith("UsageError: --only cannot be combined with --to")
    runs = store_of(home).list_runs()
    assert len(runs) == 2
    first, second = (_show(home, r["run_id"]) for r in reversed(runs))
    assert {t: s["status"] for t, s in first["tasks"].items()} == {"make": "succeeded", "total": "succeeded"}
    assert {t: s["status"] for t, s in second["tasks"].items()} == {"make": "reused", "total": "succeeded"}
    assert second["tasks"]["make"]["reused_from"]["run_id"] == first["run_id"]
    assert second["partial"]["select"]["only"] == ["total"]


def test_a_run_whose_b_artifact_was_deleted_is_passed_over(tmp_path: Path, home: Path) -> None:
    """b's output differs from run to run (a marker file, not its code or inputs): the newest run's `y` deleted
    from the artifact store, `--only c` takes the older run's b; with both gone it is refused, saying why."""
    log = tmp_path / "ran.log"
    nb = _chain(tmp_path / "chain.ipynb", log, b_body="y = x + 10 + int(os.path.exists(log + '.more'))")
    older = _run(home, nb, "--to", "c")
    (tmp_path / "ran.log.more").touch()
    newest = _run(home, nb, "--to", "c", "--no-cache")  # b runs again (not a cache hit): y = 12
    _ran(log)
    paths = {r["run_id"]: Path(r["tasks"]["b"]["outputs"]["y"]["uri"].removeprefix("file://"))
             for r in (older, newest)}
    assert paths[older["run_id"]] != paths[newest["run_id"]] and all(p.is_file() for p in paths.values())

    paths[newest["run_id"]].unlink()
    taken = _run(home, nb, "--only", "c")
    assert _ran(log) == ["c"]
    assert _show(home, taken["run_id"])["tasks"]["b"]["reused_from"]["run_id"] == older["run_id"]
    assert json.loads(flyte(home, "outputs", taken["run_id"], "--json").stdout)["c"] == {"z": 22}  # older b: 11

    paths[older["run_id"]].unlink()
    refusal = _refused(home, nb, "--only", "c")
    assert ("--only c: cannot take the outputs of task `b` from an earlier run: the artifact of its output y was "
            f"deleted from the artifact store (run {taken['run_id']}, the newest that has it); "
            "include it with --from b") in refusal
