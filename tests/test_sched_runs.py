"""`flyte-lab scheduler` end to end: real scheduler processes, real runs, real SQLite, a fake clock (`--now`).

Every process a test starts runs in its own session and is killed by process group
in `finally`; anything left carrying the test's private FLYTE_LAB_HOME is killed by pid.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.store import RunStore
from tests.conftest import CLI, cli_env
from tests.process_helpers import kill_home_processes, killpg, wait_for, wait_no_home_processes
from tests.test_sched_cli import spoil, spoiled_rows, write_notebook

pytestmark = pytest.mark.cluster

REPORT = ("%%flyte_task report(n: int, scheduled_time: datetime) -> (day: str, total: int)\n"
          "day = scheduled_time.isoformat()\ntotal = n * 2")


@pytest.fixture
def procs(home: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            killpg(proc)
        kill_home_processes(home)


def flyte(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env(home), timeout=timeout)


def spawn(home: Path, log: Path, *args: str, env: dict[str, str] | None = None,
          stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    full = cli_env(home)
    full.update(env or {})
    with log.open("wb") as out:
        return subprocess.Popen([*CLI, *args], env=full, stdout=out, stderr=subprocess.STDOUT, stdin=stdin,
                                start_new_session=True)


def add(home: Path, notebook: Path, name: str, *args: str) -> None:
    proc = flyte(home, "schedule", "add", str(notebook), "--name", name, *args)
    assert proc.returncode == 0, proc.stderr


def runs(home: Path, schedule: str | None = None) -> list[dict[str, Any]]:
    rows = json.loads(flyte(home, "runs", "--json").stdout)
    return [r for r in rows if schedule is None or r["schedule"] == schedule]


def fires(home: Path, schedule: str) -> list[dict[str, Any]]:
    with RunStore.from_env(home) as store:
        return store.schedule_fires(schedule)


def test_catchup_on_and_off_and_the_fire_time_reaches_the_notebook(home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    start = ["--cron", "0 * * * *", "--start", "2026-01-01T00:00:00Z"]
    add(home, nb, "caught", *start, "--catchup", "--max-catchup", "2")
    add(home, nb, "latest", *start, "-p", "n=5", "--timezone", "Asia/Kolkata")
    proc = flyte(home, "scheduler", "--once", "--now", "2026-01-01T05:30:00Z")
    assert proc.returncode == 0, proc.stderr
    assert "schedule caught: missed fire times up to Thu 1 Jan, 03:00 UTC skipped (--max-catchup 2)" in proc.stderr
    # minute 0 in Kolkata is minute 30 in UTC
    assert "schedule latest: missed fire times up to Thu 1 Jan, 10:00 IST skipped (catch-up off)" in proc.stderr

    caught = sorted(runs(home, "caught"), key=lambda r: r["scheduled_time"])
    assert [r["scheduled_time"] for r in caught] == ["2026-01-01T04:00:00+00:00", "2026-01-01T05:00:00+00:00"]
    assert all(r["status"] == "succeeded" for r in caught)
    (latest,) = runs(home, "latest")
    assert latest["scheduled_time"] == "2026-01-01T05:30:00+00:00"
    outputs = json.loads(flyte(home, "outputs", latest["run_id"], "--json").stdout)
    # the fire time, in the schedule's timezone; the schedule's own -p values too
    assert outputs["report"] == {"day": "2026-01-01T11:00:00+05:30", "total": 10}
    outputs = json.loads(flyte(home, "outputs", caught[0]["run_id"], "--json").stdout)
    assert outputs["report"] == {"day": "2026-01-01T04:00:00+00:00", "total": 6}
    # max-active 1 (the default): the two caught-up runs ran one after the other
    first, second = (json.loads(flyte(home, "show", r["run_id"], "--json").stdout) for r in caught)
    assert second["started_at"] >= first["finished_at"]

    # a later clock with no new fire time fires nothing
    assert flyte(home, "scheduler", "--once", "--now", "2026-01-01T05:59:00Z").returncode == 0
    assert len(runs(home)) == 3
    listing = json.loads(flyte(home, "schedule", "list", "--json").stdout)
    assert {s["name"]: s["last_run"]["scheduled_time"] for s in listing} == {
        "caught": "2026-01-01T05:00:00+00:00", "latest": "2026-01-01T05:30:00+00:00"}
    wait_no_home_processes(home, 30)


def test_the_log_says_in_one_line_per_fire_time_what_fired_why_and_which_run(home: Path, tmp_path: Path) -> None:
    """The scheduler's log (its stderr and its launches') is one line per fire time, not the libraries' chatter."""
    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    add(home, nb, "paris", "--cron", "6 17 * * *", "--timezone", "Europe/Paris", "--start", "2026-12-02T00:00")
    proc = flyte(home, "scheduler", "--once", "--now", "2026-12-02T16:06:20Z")
    assert proc.returncode == 0, proc.stderr
    (run,) = runs(home, "paris")
    lines = proc.stderr.splitlines()
    assert [line.split(" INFO ", 1)[1] for line in lines if "paris" in line] == [
        f"schedule paris: Wed 2 Dec, 17:06 CET (on time): started run {run['run_id']}"], proc.stderr
    assert [line for line in lines if " INFO " in line and " flyte_lab." not in line] == [], proc.stderr
    assert "distributed." not in proc.stderr and "papermill" not in proc.stderr
    wait_no_home_processes(home, 30)


def test_two_schedulers_started_together_make_one_run_per_fire_time(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    add(home, nb, "race", "--every", "15m", "--start", "2026-01-01T00:00:00Z", "--catchup", "--max-active", "3")
    for i in range(2):
        procs.append(spawn(home, tmp_path / f"scheduler-{i}.log", "scheduler", "--once",
                           "--now", "2026-01-01T00:40:00Z"))
    for proc in procs:
        assert proc.wait(timeout=240) == 0, [(tmp_path / f"scheduler-{i}.log").read_text() for i in range(2)]
    made = runs(home, "race")
    assert sorted(r["scheduled_time"] for r in made) == [
        "2026-01-01T00:00:00+00:00", "2026-01-01T00:15:00+00:00", "2026-01-01T00:30:00+00:00"]
    assert all(r["status"] == "succeeded" for r in made)
    assert {f["state"] for f in fires(home, "race")} == {"launched"}
    assert {f["run_id"] for f in fires(home, "race")} == {r["run_id"] for r in made}
    wait_no_home_processes(home, 30)


def test_a_scheduler_killed_after_claiming_loses_nothing_and_doubles_nothing(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    add(home, nb, "crash", "--cron", "30 6 * * *", "--start", "2026-01-01T00:00:00Z")
    held = spawn(home, tmp_path / "held.log", "scheduler", "--once", "--now", "2026-01-02T07:00:00Z",
                 env={"FLYTE_LAB_SCHEDULER_HOLD_AFTER_CLAIM": "1"}, stdin=subprocess.PIPE)
    procs.append(held)
    wait_for(lambda: [f for f in fires(home, "crash") if f["state"] == "claimed"], 60, "the claim")
    killpg(held)  # SIGKILL between "claimed" and "launched"
    assert runs(home) == []
    (fire,) = fires(home, "crash")
    assert (fire["state"], fire["fire_time"]) == ("claimed", "2026-01-02T06:30:00+00:00")

    proc = flyte(home, "scheduler", "--once", "--now", "2026-01-02T07:00:00Z")
    assert proc.returncode == 0, proc.stderr
    assert "claim 2: its previous launcher stopped" in proc.stderr
    (run,) = runs(home)
    assert (run["schedule"], run["scheduled_time"], run["status"]) == (
        "crash", "2026-01-02T06:30:00+00:00", "succeeded")
    (fire,) = fires(home, "crash")
    assert (fire["state"], fire["run_id"], fire["claims"]) == ("launched", run["run_id"], 2)
    # and again, later the same day: nothing new
    assert flyte(home, "scheduler", "--once", "--now", "2026-01-02T08:00:00Z").returncode == 0
    assert len(runs(home)) == 1
    wait_no_home_processes(home, 30)


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_max_active_one_with_a_long_run_never_runs_two_at_once(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]], overlap: str) -> None:
    flag = tmp_path / "release"
    nb = write_notebook(tmp_path / "long.ipynb",
                        "%%flyte_task wait(n: int) -> done: int\nimport os, time\n"
                        f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\ndone = n")
    add(home, nb, "long", "--cron", "0 * * * *", "--start", "2026-01-01T00:00:00Z", "--max-active", "1",
        "--overlap", overlap)
    first = spawn(home, tmp_path / "first.log", "scheduler", "--once", "--now", "2026-01-01T01:00:30Z")
    procs.append(first)
    wait_for(lambda: [r for r in runs(home) if r["status"] == "running"], 120, "the first run to start")

    proc = flyte(home, "scheduler", "--once", "--now", "2026-01-01T02:00:30Z")
    assert proc.returncode == 0, proc.stderr
    assert len(runs(home)) == 1  # the 02:00 fire did not start a second run
    if overlap == "skip":
        assert ("schedule long: Thu 1 Jan, 02:00 UTC (on time): skipped: 1 earlier run(s) of this schedule still "
                "active (--max-active 1, --overlap skip)") in proc.stderr
    states = {f["fire_time"]: f["state"] for f in fires(home, "long")}
    assert states == {"2026-01-01T01:00:00+00:00": "launched",
                      "2026-01-01T02:00:00+00:00": "skipped" if overlap == "skip" else "pending"}

    flag.write_text("go")
    assert first.wait(timeout=240) == 0, (tmp_path / "first.log").read_text()
    made = sorted(runs(home), key=lambda r: r["scheduled_time"])
    assert all(r["status"] == "succeeded" for r in made)
    if overlap == "skip":
        assert len(made) == 1
        reason = fires(home, "long")[1]["reason"]
        assert reason == "1 earlier run(s) of this schedule still active (--max-active 1, --overlap skip)"
    else:  # the queued fire time ran once the first run ended, by the scheduler still waiting
        assert [r["scheduled_time"] for r in made] == ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]
        first_run, second_run = (json.loads(flyte(home, "show", r["run_id"], "--json").stdout) for r in made)
        assert second_run["started_at"] >= first_run["finished_at"]
    wait_no_home_processes(home, 30)


def test_a_notebook_that_no_longer_validates_is_recorded_not_retried(home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    add(home, nb, "gone", "--cron", "@hourly", "--start", "2026-01-01T00:00:00Z")
    nb.unlink()
    proc = flyte(home, "scheduler", "--once", "--now", "2026-01-01T01:30:00Z")
    assert proc.returncode == 1
    assert "schedule gone: Thu 1 Jan, 01:00 UTC (catch-up of a missed time, 30m00s late): refused:" in proc.stderr
    (fire,) = fires(home, "gone")
    assert fire["state"] == "failed" and "daily.ipynb" in fire["reason"]
    assert runs(home) == []
    listing = flyte(home, "schedule", "list", "--json")
    assert "is missing" in listing.stderr
    assert datetime.fromisoformat(json.loads(listing.stdout)[0]["next_fire_time"]).minute == 0


def test_rows_that_cannot_be_read_are_reported_once_and_the_good_schedule_still_fires(
        home: Path, tmp_path: Path) -> None:
    from datetime import UTC

    from flyte_lab.scheduler.loop import planner

    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    bad = spoiled_rows()
    for name in ["good", "went_bad", *bad]:
        add(home, nb, name, "--every", "1h", "--start", "2026-01-01T00:00:00Z")
    with RunStore.from_env(home) as store:  # went_bad's fire time was found due before its row went bad
        assert store.plan_fires("went_bad", planner(datetime(2026, 1, 1, 1, 30, tzinfo=UTC))) == [
            datetime(2026, 1, 1, 1)]
    spoil(home, "went_bad", "every_s = 0.0000001")
    for name, (assignment, _) in bad.items():
        spoil(home, name, assignment)

    proc = flyte(home, "scheduler", "--once", "--now", "2026-01-01T01:30:00Z")
    assert proc.returncode == 0, proc.stderr
    (run,) = runs(home)
    assert (run["schedule"], run["scheduled_time"], run["status"]) == (
        "good", "2026-01-01T01:00:00+00:00", "succeeded")
    for name, why in [*((n, w) for n, (_, w) in bad.items()), ("went_bad", "--every `1e-07s`: an interval is at")]:
        (line,) = [line for line in proc.stderr.splitlines() if f"schedule {name}: " in line]
        assert f"schedule {name}: skipped, its stored row is invalid: " in line and why in line, line
    (fire,) = fires(home, "went_bad")
    assert fire["state"] == "failed" and fire["reason"].startswith("the schedule is invalid: --every `1e-07s`")
    assert "Traceback" not in proc.stderr
    wait_no_home_processes(home, 30)


def test_the_long_running_scheduler_fires_what_is_due_and_stops_on_sigterm(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    import signal

    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    # due at once on the real clock (no waiting on cron): a daily rate that started long ago
    add(home, nb, "daemon", "--every", "1d", "--start", "2020-01-01T00:00:00Z")
    log = tmp_path / "scheduler.log"
    daemon = spawn(home, log, "scheduler")
    procs.append(daemon)
    wait_for(lambda: [r for r in runs(home) if r["status"] == "succeeded"], 120, "the due run")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0, log.read_text()
    assert "scheduler stopping" in log.read_text()
    (run,) = runs(home)
    assert run["schedule"] == "daemon" and run["scheduled_time"].endswith("T00:00:00+00:00")
    wait_no_home_processes(home, 30)


def test_two_launchers_of_one_fire_time_make_one_run(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """The store's unique (schedule, scheduled_time) is the last guard: a slow claimant and its successor."""
    from flyte_lab.run_launch import command, request_line

    nb = write_notebook(tmp_path / "daily.ipynb", REPORT)
    add(home, nb, "twice", "--cron", "@daily", "--start", "2026-01-01T00:00:00Z")
    logs = [tmp_path / f"launch-{i}.log" for i in range(2)]
    for log in logs:
        with log.open("wb") as out:
            proc = subprocess.Popen(command(), env=cli_env(home), stdout=subprocess.DEVNULL, stderr=out,
                                    stdin=subprocess.PIPE, start_new_session=True)
            assert proc.stdin is not None
            proc.stdin.write(request_line({"action": "fire", "schedule": "twice", "fire_time": "2026-01-02T00:00:00Z"}))
            proc.stdin.close()  # both started before either reads the store
            procs.append(proc)
    assert [p.wait(timeout=240) for p in procs] == [0, 0], [log.read_text() for log in logs]
    (run,) = runs(home)
    assert (run["scheduled_time"], run["status"]) == ("2026-01-02T00:00:00+00:00", "succeeded")
    text = "".join(log.read_text() for log in logs)
    assert f"already has run {run['run_id']}; not launching another" in text
    wait_no_home_processes(home, 30)
