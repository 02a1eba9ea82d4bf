"""One task attempt on the worker side, called in-process: real kernels, real papermill, no Dask.

Timeout watchdog, cancel, kernelspecs, scoped secrets, the driver's artifact
key, executed notebooks and results by URL, and error lines that match the
executed notebook.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from papermill.engines import papermill_engines

from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.engine.attempt_records import AttemptFailed, AttemptResult, AttemptSucceeded, ErrorRecord
from flyte_lab.engine.task_notebook import build_task_notebook
from flyte_lab.engine.worker.kernels import close_pools, pool, pooled_kernels
from flyte_lab.engine.worker.kernelspecs import missing_kernelspec
from flyte_lab.engine.worker.papermill_engine import ENGINE_NAME, FlyteLabEngine
from flyte_lab.engine.worker.run_attempt import cancel_attempts, run_task_attempt
from flyte_lab.graph.model import typeref_to_json
from flyte_lab.graph.validate import validate_notebook

KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _no_pooled_kernels_left() -> Iterator[None]:
    yield
    close_pools()


def make_spec(tmp_path: Path, cells: list[str], task: str, **over: Any) -> dict[str, Any]:
    """The spec the driver would send for `task` of a notebook made of `cells` (plain paths by default)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell(c) for c in cells]
    path = tmp_path / "pipeline.ipynb"
    nbformat.write(nb, path)
    wf = validate_notebook(str(path))
    assert not wf.errors, wf.errors
    t = wf.tasks[task]
    out = tmp_path / "runs" / task
    spec: dict[str, Any] = {
        "key": f"flyte-test-{task}-{secrets.token_hex(4)}", "task": task, "cell": t.cell, "body_line": t.body_line,
        "kernel_name": wf.kernel_name, "notebook": build_task_notebook(wf, task), "timeout_s": None,
        "env": None, "scrub": [], "map_index": None, "artifact_key": KEY,
        "output_notebook": str(out / "attempt-1.ipynb"),
        "context": {"task": task, "artifacts": str(tmp_path / "artifacts"), "cwd": str(tmp_path),
                    "map_index": None, "result_path": str(out / "attempt-1.outputs.json"), "inputs": [],
                    "outputs": [{"name": p.name, "type": typeref_to_json(p.type)} for p in t.outputs]},
    }
    for name, value in over.items():
        if name in spec["context"] and name not in spec:
            spec["context"][name] = value
        else:
            spec[name] = value
    return spec


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return value


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def executed_text(spec: dict[str, Any]) -> str:
    url = spec["output_notebook"]
    return Path(url.removeprefix("file://")).read_text()


# -- 1. one budget for the whole attempt --------------------------------------------------------------------------


def test_timeout_counts_the_whole_attempt_and_kills_the_kernel(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    spec = make_spec(tmp_path, [
        f"%%flyte_setup\nimport os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(2.5)",
        "%%flyte_task slow() -> done: int\ntime.sleep(2.5)\ndone = 1",
    ], "slow", timeout_s=4)
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptFailed) and result.kind == "timeout", result
    assert result.error.to_dict() == {"type": "TaskTimeout", "message": "task `slow` ran longer than its --timeout "
                                      "of 4s (kernel start to outputs saved); its kernel was killed",
                                      "cell": spec["cell"], "line": 1, "traceback": ""}
    assert not alive(int(pid_file.read_text()))
    assert "time.sleep(2.5)" in executed_text(spec)  # the executed notebook is kept as the task's log
    # kept by the one engine, registered once with papermill's registry as a module-level class
    assert papermill_engines.get_engine(ENGINE_NAME) is FlyteLabEngine


# -- 2. cancel ----------------------------------------------------------------------------------------------------


def test_cancel_kills_a_running_attempt(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    spec = make_spec(tmp_path, [
        "%%flyte_setup\nimport os, time",
        f"%%flyte_task sleepy() -> None\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)",
    ], "sleepy")
    results: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: results.append(run_task_attempt(spec)))
    thread.start()
    try:
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the body to start"))
        assert cancel_attempts([spec["key"], "flyte-someone-else"]) == [spec["key"]]
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()
    (result,) = results
    assert isinstance(result, AttemptFailed) and result.kind == "cancelled", result
    assert (result.error.type, result.error.message) == ("Cancelled", "task `sleepy` was cancelled")
    assert not alive(pid)


def test_a_cancelled_attempt_returns_at_once_not_at_nbclients_next_liveness_poll(tmp_path: Path) -> None:
    # nbclient looks for a dead kernel once a second from the cell's start; cancelling as soon as the body
    # starts, the old attempt returned ~1 s later (and a driver closing its cluster waited for it)
    pid_file = tmp_path / "kernel.pid"
    spec = make_spec(tmp_path, [
        "%%flyte_setup\nimport os, time",
        f"%%flyte_task sleepy() -> None\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)",
    ], "sleepy")
    returned = threading.Event()
    results: list[dict[str, Any]] = []

    def attempt() -> None:
        results.append(run_task_attempt(spec))
        returned.set()

    thread = threading.Thread(target=attempt)
    thread.start()
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the body to start")
        cancelled = time.monotonic()
        assert cancel_attempts([spec["key"]]) == [spec["key"]]
        assert returned.wait(10)
        took = time.monotonic() - cancelled
    finally:
        thread.join(timeout=60)
    assert isinstance(results[0], AttemptFailed) and results[0].error.type == "Cancelled", results
    assert took < 0.5, f"the attempt returned {took:.2f}s after its cancel"


def test_an_attempt_cancelled_before_it_starts_starts_no_kernel(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, ["%%flyte_task never() -> None\nraise SystemExit('must not run')"], "never")
    assert cancel_attempts([spec["key"]], dask_worker=None) == []
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptFailed), result
    assert (result.kind, result.error.type) == ("cancelled", "Cancelled")
    assert result.output_notebook is None
    assert not Path(spec["output_notebook"]).exists()


# -- 3. kernelspecs -----------------------------------------------------------------------------------------------


def test_tasks_run_in_the_notebooks_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir = tmp_path / "jupyter" / "kernels" / "marked"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Marked", "language": "python", "env": {"FLYTE_TEST_MARKER": "from-kernelspec"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    assert missing_kernelspec("marked") is None
    cells = ["%%flyte_setup\nimport os",
             "%%flyte_task probe() -> marker: str\nmarker = os.environ['FLYTE_TEST_MARKER']"]
    first = run_task_attempt(make_spec(tmp_path, cells, "probe", kernel_name="marked"))
    assert isinstance(first, AttemptSucceeded), first
    assert first.outputs["marker"]["value"] == "from-kernelspec"
    marked = pool("marked")
    assert marked is not None
    wait_for(lambda: marked.live() >= 1, 60, "a pooled kernel of the `marked` kernelspec")
    second = run_task_attempt(make_spec(tmp_path, cells, "probe", kernel_name="marked"))  # from the pool
    assert isinstance(second, AttemptSucceeded), second
    assert second.outputs["marker"]["value"] == "from-kernelspec"


def test_a_missing_kernelspec_is_a_clear_user_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, ["%%flyte_task t() -> None\npass"], "t", kernel_name="no-such-kernel")
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptFailed), result
    assert (result.kind, result.error.type) == ("user", "NoSuchKernel")
    message = result.error.message
    assert "`no-such-kernel`" in message and "python3" in message and "Traceback" not in message
    assert missing_kernelspec("no-such-kernel") is not None


# -- 5. secrets stay with their task ------------------------------------------------------------------------------


def test_a_secret_reaches_only_the_task_that_asked_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    python3 = pool("python3")
    assert python3 is not None
    wait_for(lambda: python3.live() >= 1, 60, "a pooled kernel started with the whole environment")
    scrub = ["SECRET_TOKEN", "TOKEN"]
    cells = ["%%flyte_setup\nimport os",
             "%%flyte_task plain() -> seen: list[str]\nassert 'SECRET_TOKEN' not in os.environ\n"
             "seen = sorted(k for k in os.environ if 'TOKEN' in k)",
             "%%flyte_task own() -> token: str\nassert 'SECRET_TOKEN' not in os.environ\ntoken = os.environ['TOKEN']"]
    for _ in range(2):  # the second one may come from the pool, refilled for this scrub list
        plain = run_task_attempt(make_spec(tmp_path, cells, "plain", scrub=scrub))
        assert isinstance(plain, AttemptSucceeded), plain
        assert plain.outputs["seen"]["value"] == []
        wait_for(lambda: python3.live() >= 1, 60, "the pool to refill")
    own = run_task_attempt(make_spec(tmp_path, cells, "own", scrub=scrub, env={"TOKEN": "x"}))
    assert isinstance(own, AttemptSucceeded), own
    assert own.outputs["token"]["value"] == "x"
    unscrubbed = run_task_attempt(make_spec(tmp_path, cells, "plain"))  # no secrets in this run: the env is whole
    assert isinstance(unscrubbed, AttemptFailed) and unscrubbed.error.type == "AssertionError"
    assert pooled_kernels() <= python3.size  # bounded: kernels started for other secrets were not kept


# -- 6 + 7. the driver's key, notebooks and results by URL -----------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["plain-path", "file-url"])
def test_outputs_are_signed_with_the_drivers_key_and_written_by_url(tmp_path: Path, as_url: bool) -> None:
    cells = ["%%flyte_task make() -> (n: int, text: str)\nn = 41 + 1\ntext = 'hi'"]
    spec = make_spec(tmp_path, cells, "make")
    if as_url:
        spec["output_notebook"] = "file://" + str(tmp_path / "shared" / "make" / "nb.ipynb")
        spec["context"]["result_path"] = "file://" + str(tmp_path / "shared" / "make" / "outputs.json")
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptSucceeded), result
    assert result.output_notebook == spec["output_notebook"]
    text = executed_text(spec)
    assert KEY not in text and "artifact_key_file" in text
    assert KEY not in Path(spec["context"]["result_path"].removeprefix("file://")).read_text()
    path = _injected(text)["artifact_key_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    store = ArtifactStore(str(tmp_path / "artifacts"), bytes.fromhex(KEY), cache_dir=str(tmp_path / "cache"))
    n = result.outputs["n"]
    from flyte_lab.graph.model import TypeRef

    assert store.get(n["uri"], TypeRef("int")) == 42
    assert not (tmp_path / "home").exists()


def test_the_executed_notebook_names_its_language_without_a_second_kernel_info(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """papermill asks the kernel for kernel_info after the cells; the reply of the readiness check says the same."""
    from flyte_lab.engine.worker.kernels import FastReadyClient

    asked: list[str] = []
    ready_at: list[int] = []
    real_ask, real_ready = FastReadyClient.kernel_info, FastReadyClient.wait_for_ready

    def ask(self: FastReadyClient) -> str:
        asked.append("kernel_info")
        return real_ask(self)

    async def ready(self: FastReadyClient, timeout: float | None = None) -> None:
        await real_ready(self, timeout)
        ready_at.append(len(asked))

    monkeypatch.setattr(FastReadyClient, "kernel_info", ask)
    monkeypatch.setattr(FastReadyClient, "wait_for_ready", ready)
    result = run_task_attempt(make_spec(tmp_path, ["%%flyte_task make() -> n: int\nn = 1"], "make"))
    assert isinstance(result, AttemptSucceeded), result
    info = nbformat.reads(executed_text(make_spec(tmp_path, ["%%flyte_task make() -> n: int\nn = 1"], "make")),
                          as_version=4).metadata["language_info"]
    assert info["name"] == "python" and info["version"] == ".".join(map(str, sys.version_info[:3]))
    assert ready_at and len(asked) == ready_at[0]  # nothing asked after the kernel was ready


def _injected(text: str) -> dict[str, Any]:
    nb = nbformat.reads(text, as_version=4)
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    (assign,) = [n for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)]
    return dict(ast.literal_eval(assign.value))


# -- 8. one line numbering ----------------------------------------------------------------------------------------


def test_the_error_line_is_the_line_the_executed_notebook_shows(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, ["%%flyte_task boom() -> None\nx = 1\ny = 2\nraise ValueError(f'bad {x + y}')"],
                     "boom")
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptFailed) and result.kind == "user", result
    error = result.error
    assert (error.type, error.message, error.cell, error.line) == ("ValueError", "bad 3", 1, 4)
    assert "line 4" in executed_text(spec)
    assert "# %%flyte_task boom() -> None" in executed_text(spec)


def test_a_continued_header_keeps_the_body_on_its_own_lines(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, ["%%flyte_task two() \\\n  -> None\nx = 1\nraise KeyError(x)"], "two")
    error = _error(run_task_attempt(spec))
    assert (error.type, error.line) == ("KeyError", 4)
    assert "line 4" in executed_text(spec)


def test_an_error_in_a_setup_helper_points_at_the_calling_task_line(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [
        "%%flyte_setup\ndef helper(v):\n    raise RuntimeError(f'helper got {v}')",
        "%%flyte_task caller() -> None\nv = 5\nhelper(v)",
    ], "caller")
    error = _error(run_task_attempt(spec))
    assert (error.type, error.cell, error.line) == ("RuntimeError", 2, 3)
    assert error.traceback and "helper(v)" in error.traceback and "raise RuntimeError" in error.traceback


def _error(result: AttemptResult) -> ErrorRecord:
    assert isinstance(result, AttemptFailed), result
    return result.error


# -- 9. a kernel that dies starting ------------------------------------------------------------------------------


def kill_started_kernels(monkeypatch: pytest.MonkeyPatch, how_many: int) -> list[int]:
    """The first `how_many` kernels the attempt starts (pooled or its own) are killed as soon as they are the
    attempt's, before they can answer: what a kernel whose port was taken by another process meanwhile does."""
    from flyte_lab.engine.worker.kernels import TaskKernelManager

    killed: list[int] = []
    real_launch = TaskKernelManager._async_launch_kernel

    async def launch_then_kill(self: TaskKernelManager, kernel_cmd: list[str], **kw: Any) -> None:
        await real_launch(self, kernel_cmd, **kw)
        if len(killed) < how_many:
            proc = self.provisioner.process  # type: ignore[union-attr]
            proc.kill()
            proc.wait(10)
            killed.append(proc.pid)

    monkeypatch.setattr(TaskKernelManager, "_async_launch_kernel", launch_then_kill)
    return killed


def test_a_kernel_that_dies_before_answering_is_replaced_and_the_attempt_runs_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.engine.worker.papermill_engine import START_TRIES

    marks = tmp_path / "marks"
    killed = kill_started_kernels(monkeypatch, START_TRIES - 1)
    spec = make_spec(tmp_path, [f"%%flyte_task make() -> n: int\nopen({str(marks)!r}, 'a').write('ran\\n')\nn = 7"],
                     "make")
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptSucceeded), result
    assert result.outputs["n"]["value"] == 7
    assert len(killed) == START_TRIES - 1 and not any(alive(pid) for pid in killed)
    assert marks.read_text() == "ran\n"  # the task's code ran once, in the kernel that answered


def test_a_kernelspec_whose_kernels_always_die_starting_fails_the_attempt_after_a_few(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.engine.worker.papermill_engine import START_TRIES

    killed = kill_started_kernels(monkeypatch, 100)
    result = run_task_attempt(make_spec(tmp_path, ["%%flyte_task make() -> n: int\nn = 7"], "make"))
    assert isinstance(result, AttemptFailed) and result.kind == "infra", result
    assert "Kernel died before replying to kernel_info" in result.error.message
    assert len(killed) == START_TRIES


# -- 10. the live view never fails the task ------------------------------------------------------------------------


def test_only_secret_env_values_are_masked_in_the_live_output(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.engine.worker import run_attempt

    messages: list[dict[str, Any]] = []
    monkeypatch.setattr(run_attempt, "worker_sender", lambda: messages.append)
    # `--env MODE=fast --env TOKEN=$SECRET_TOKEN`: the driver scrubs the secret's source and its key, not MODE
    spec = make_spec(tmp_path, ["%%flyte_setup\nimport os",
                                "%%flyte_task show() -> None\nprint('mode', os.environ['MODE'])\n"
                                "print('token', os.environ['TOKEN'])"],
                     "show", env={"MODE": "fast", "TOKEN": "s3cr3t-value"}, scrub=["SECRET_TOKEN", "TOKEN"])
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptSucceeded), result
    assert [text for m in messages for _, text in m.get("lines", [])] == ["mode fast", "token ***"]


def failing_mid_run_saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every mid-run save of the executed notebook fails (its folder unwritable, S3 refusing); the final write
    at the attempt's end works. Returns the URLs the failed saves were for."""
    from flyte_lab.engine.worker import files
    from flyte_lab.engine.worker.papermill_engine import LiveSave

    refused: list[str] = []
    real_write = files.write_bytes

    def write_bytes(url: str, data: bytes) -> None:
        if sys._getframe(1).f_code is LiveSave.save.__code__:
            refused.append(url)
            raise PermissionError(13, "Permission denied", url)
        real_write(url, data)

    monkeypatch.setattr(files, "write_bytes", write_bytes)
    return refused


def test_a_failed_mid_run_save_neither_fails_the_attempt_nor_is_retried(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    refused = failing_mid_run_saves(monkeypatch)
    spec = make_spec(tmp_path, ["%%flyte_setup\nimport time",
                                "%%flyte_task slow() -> n: int\nfor i in range(6):\n    print(i, flush=True)\n"
                                "    time.sleep(0.5)\nn = 3"], "slow")
    result = run_task_attempt(spec)
    assert isinstance(result, AttemptSucceeded), result
    assert refused == [spec["output_notebook"]]  # tried once (a save every 2 s after 2 s), then left alone
    assert "n = 3" in executed_text(spec)  # the final write is the attempt's own, as ever


def test_a_failed_mid_run_save_does_not_hide_the_tasks_own_error(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    refused = failing_mid_run_saves(monkeypatch)
    spec = make_spec(tmp_path, ["%%flyte_setup\nimport time",
                                "%%flyte_task boom() -> None\ntime.sleep(2.5)\nraise ValueError('mine')"], "boom")
    error = _error(run_task_attempt(spec))
    assert (error.type, error.message) == ("ValueError", "mine")
    assert refused  # the save as the cell ended, after its 2.5 s
