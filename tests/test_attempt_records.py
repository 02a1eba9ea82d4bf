"""Typed attempt records: one constructor per source of an error, each stored in the shape DESIGN.md gives
(`error` in `show --json` and the store's JSON columns), exactly as the dicts written by hand before them."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

from flyte_lab.engine.attempt_records import AttemptFailed, AttemptSucceeded, ErrorRecord
from flyte_lab.statuses import CancelSource


def test_a_cell_error_names_the_users_cell_line_and_traceback() -> None:
    error = ErrorRecord.from_cell_error("ValueError", "bad 3", cell=4, line=2, traceback="Cell In[3], line 2")
    assert json.dumps(error.to_dict()) == ('{"type": "ValueError", "message": "bad 3", "cell": 4, "line": 2, '
                                           '"traceback": "Cell In[3], line 2"}')


def test_an_infrastructure_error_names_no_place_unless_given_one() -> None:
    assert ErrorRecord.infrastructure("DeadKernelError", "infrastructure error: gone").to_dict() == {
        "type": "DeadKernelError", "message": "infrastructure error: gone", "cell": None, "line": None,
        "traceback": ""}
    assert ErrorRecord.infrastructure("ArtifactError", "no manifest", cell=3, line=1).to_dict() == {
        "type": "ArtifactError", "message": "no manifest", "cell": 3, "line": 1, "traceback": ""}
    assert ErrorRecord.worker_lost("t", "tcp://w2").to_dict() == {
        "type": "WorkerLost", "message": "the worker running task `t` was lost; Dask reran it on tcp://w2",
        "cell": None, "line": None, "traceback": ""}
    assert ErrorRecord.driver_lost().to_dict() == {
        "type": "DriverLost", "message": "the driver of this run stopped during this attempt", "cell": None,
        "line": None, "traceback": ""}


def test_a_task_that_cannot_start_is_refused_at_its_cell() -> None:
    assert ErrorRecord.refused("NoSuchKernel", "task `t` cannot start: x", cell=2).to_dict() == {
        "type": "NoSuchKernel", "message": "task `t` cannot start: x", "cell": 2, "line": None, "traceback": ""}
    assert ErrorRecord.refused("Unschedulable", "task `t` needs 64 CPUs", cell=2, line=1).to_dict()["line"] == 1


def test_cancellations_of_an_attempt_and_of_the_run() -> None:
    assert ErrorRecord.cancelled("task `t` was cancelled", cell=5).to_dict() == {
        "type": "Cancelled", "message": "task `t` was cancelled", "cell": 5, "line": None, "traceback": ""}
    assert ErrorRecord.cancelled("the Dask task was cancelled").to_dict()["cell"] is None
    # the run's cancel names no place (nothing to debug), only who cancelled
    assert json.dumps(ErrorRecord.run_cancelled(CancelSource.DASHBOARD).to_dict()) == (
        '{"type": "Cancelled", "message": "cancelled from the dashboard"}')


def test_a_timeout_points_at_the_task_line() -> None:
    assert ErrorRecord.timeout("slow", 4.0, cell=2).to_dict() == {
        "type": "TaskTimeout", "message": "task `slow` ran longer than its --timeout of 4s (kernel start to outputs "
        "saved); its kernel was killed", "cell": 2, "line": 1, "traceback": ""}


def test_the_runs_own_failures() -> None:
    assert json.dumps(ErrorRecord.driver_failed("KeyError: 'x'", "Traceback …").to_dict()) == (
        '{"type": "DriverError", "message": "the driver failed: KeyError: \'x\'", "traceback": "Traceback \\u2026"}')
    assert ErrorRecord.not_started("OSError", "no route").to_dict() == {"type": "OSError", "message": "no route"}


def test_who_is_at_fault_as_the_store_records_it() -> None:
    error = ErrorRecord.infrastructure("X", "y")
    assert [AttemptFailed(kind=kind, error=error).fault for kind in ("user", "timeout", "infra", "cancelled")] == [
        "user", "user", "infra", "infra"]


def test_results_cross_to_a_process_that_imports_only_the_stdlib_and_flyte_lab() -> None:
    """What a worker returns through Dask unpickles in a fresh interpreter: no papermill, nbformat or Dask types."""
    results = [AttemptSucceeded(outputs={"n": {"uri": "file:///a", "value": 1}}, output_notebook="file:///nb",
                                worker="tcp://w", started=1.5),
               AttemptFailed(kind="timeout", error=ErrorRecord.timeout("t", 1, cell=1), kernel_note="started")]
    code = ("import pickle, sys; r = pickle.loads(sys.stdin.buffer.read()); "
            "heavy = {'papermill', 'nbformat', 'distributed', 'nbclient'} & set(sys.modules); "
            "print(repr(r), sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(results), capture_output=True, check=True)
    assert out.stdout.decode().strip() == f"{results!r} []"
