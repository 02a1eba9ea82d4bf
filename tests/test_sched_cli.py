"""`flyte-lab schedule add|list|pause|resume|remove`: refusals store nothing; list warns about changed notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.cli.main import main
from flyte_lab.store import RunStore


def write_notebook(path: Path, *tasks: str, params: str = "n = 3") -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_code_cell("%%flyte_setup\nfrom datetime import datetime"), cell, *(new_code_cell(t) for t in tasks)]
    nbformat.write(nb, path)
    return path


REPORT = "%%flyte_task report(n: int, scheduled_time: datetime) -> day: str\nday = scheduled_time.isoformat() * n"


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "daily.ipynb", REPORT)


# hand edits of stored rows, as an older version or a person with sqlite3 may leave them: (SET clause, why)
SPOILED = {
    "badcron": ("cron = '0 0 30 2 *', every_s = NULL", "never fires"),
    "zero": ("every_s = 0", "an interval is at least 1s"),
    "badtz": ("timezone = 'Mars/Olympus'", "not a timezone zoneinfo knows"),
    "badjson": ("params_json = '{nope'", "its stored params cannot be read"),
}
# PostgreSQL's timestamp column takes no text; SQLite's keeps whatever it is given
SPOILED_SQLITE = {"badstart": ("start_at = 'garbage'", "its stored start cannot be read")}


def spoiled_rows() -> dict[str, tuple[str, str]]:
    from tests.pg_server import engine_on_postgres

    return SPOILED if engine_on_postgres() else SPOILED | SPOILED_SQLITE


def spoil(home: Path, name: str, assignment: str) -> None:
    """Edit a stored schedule row by hand, past every check of flyte_lab."""
    import sqlalchemy

    from tests.pg_server import store_url

    engine = sqlalchemy.create_engine(store_url(home))
    try:
        with engine.begin() as conn:
            sql = f"UPDATE schedules SET {assignment} WHERE name = :name"
            assert conn.execute(sqlalchemy.text(sql), {"name": name}).rowcount == 1
    finally:
        engine.dispose()


def _schedules(home: Path) -> list[dict]:
    with RunStore.from_env(home) as store:
        return store.list_schedules()


@pytest.mark.parametrize(("args", "says"), [
    (["--cron", "61 * * * *"], "--cron `61 * * * *`: is not acceptable, out of range"),
    (["--cron", "0 7 * * *", "--timezone", "Mars/Olympus"], "--timezone `Mars/Olympus`: not a timezone"),
    (["--cron", "0 7 * * *", "--timezone", "Europe"], "--timezone `Europe`: not a timezone"),
    (["--cron", "0 7 * * *", "--timezone", "Mars" * 1000], "not a timezone zoneinfo knows"),
    (["--cron", "0 7 * * *", "-p", "colour=red"], "-p colour: `colour` is not a workflow input"),
    (["--cron", "0 7 * * *", "-p", "n=many"], "-p n=many: expects int"),
    (["--cron", "0 7 * * *", "-p", "scheduled_time=2026-01-01"], "the scheduler sets `scheduled_time`"),
    (["--every", "soon"], "--every `soon`"),
    (["--cron", "0 7 * * *", "--start", "next tuesday"], "--start `next tuesday`: not an ISO-8601 time"),
    (["--cron", "0 7 * * *", "--max-active", "0"], "--max-active must be at least 1 and at most 1000, got 0"),
    (["--cron", "0 7 * * *", "--max-catchup", "99999999999999999999"], "--max-catchup must be at least 1 and at"),
    # a timing that would stop every schedule once stored: no fire time, or fire times nothing can compute
    (["--cron", "0 0 31 2 *"], "--cron `0 0 31 2 *`: no fire time within ten years of"),
    (["--cron", "0 0 30 2 *"], "a day that does not exist (such as 30 February) never fires"),
    (["--cron", "0 0 29 2 *", "--start", "9990-01-01"], "its fire times run past year 9999"),
    (["--every", "0.0000001s"], "--every `0.0000001s`: an interval is at least 1s"),
    (["--every", "0s"], "--every `0s`: an interval is at least 1s"),
    (["--every=-1s"], "--every `-1s`: expected a positive number and a unit"),
    (["--every", "1e400s"], "--every `1e400s`: expected a positive number"),
    (["--every", "nan"], "--every `nan`: expected a positive number"),
    (["--every", f"{'9' * 400}s"], "an interval is at most 3653d (ten years)"),
    (["--every", "99999999999999d"], "--every `99999999999999d`: an interval is at most 3653d"),
    (["--every", "1s", "--start", "9999-12-31T23:59:58"], "--every `1s` from --start `9999-12-31T23:59:58+00:00`: "
                                                          "its fire times run past year 9999"),
    (["--every", "1s", "--start", "10000-01-01"], "--start `10000-01-01`: out of range"),
    (["--every", "1s", "--start", "9999-12-31T23:59", "--timezone", "America/New_York"], "out of range"),
    (["--every", "1h", "--start", "1969-12-31T23:00"], "a schedule starts on 1970-01-01 or later"),
    (["--cron", "0 7 * * *", "--notify", "finished=http://x"], "EVENT one of succeeded, failed, timed_out"),
    (["--cron", "0 7 * * *", "--notify", "failed=ftp://x/y"], "expected an http://, https:// or mailto:"),
])
def test_bad_schedule_is_refused_in_one_line_and_nothing_is_stored(
        home: Path, notebook: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str) -> None:
    assert main(["schedule", "add", str(notebook), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _schedules(home) == []


def test_missing_or_invalid_notebook_is_refused(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "add", str(tmp_path / "nope.ipynb"), "--cron", "@daily"]) == 2
    assert "nope.ipynb: no such notebook" in capsys.readouterr().err
    broken = write_notebook(tmp_path / "broken.ipynb", "%%flyte_task f(m: int) -> out: int\nout = m")
    assert main(["schedule", "add", str(broken), "--cron", "@daily"]) == 2
    assert "error[missing-input]" in capsys.readouterr().err
    wrong = write_notebook(tmp_path / "wrong.ipynb", "%%flyte_task f(scheduled_time: int) -> out: int\nout = 1")
    assert main(["schedule", "add", str(wrong), "--cron", "@daily"]) == 2
    assert "declare it `datetime` or `str`" in capsys.readouterr().err
    assert _schedules(home) == []


def test_neither_or_both_of_cron_and_every_exit_2_in_one_line(
        home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["schedule", "add", str(notebook)],
                 ["schedule", "add", str(notebook), "--cron", "@daily", "--every", "1h"]):
        assert main(argv) == 2
        assert capsys.readouterr().err == 'flyte-lab: error: give exactly one of --cron "EXPR" or --every INTERVAL\n'
    assert main(["scheduler", "--now", "2026-01-01"]) == 2  # --now needs --once
    assert _schedules(home) == []


def test_add_list_pause_resume_remove(home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "add", str(notebook), "--cron", "0 7 * * *", "--timezone", "Europe/Paris",
                 "--start", "2026-03-01T00:00", "-p", "n=2", "--catchup", "--max-catchup", "5",
                 "--notify", "failed=mailto:ops@example.com",
                 "--notify", "succeeded=https://hooks.example.com/services/T0/B0/s3cr3tkey"]) == 0
    assert "schedule daily added" in capsys.readouterr().out
    assert main(["schedule", "add", str(notebook), "--every", "15m", "--name", "daily"]) == 2
    assert "a schedule named `daily` already exists" in capsys.readouterr().err
    assert main(["schedule", "list", "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert captured.err == ""
    assert (row["name"], row["cron"], row["timezone"], row["params"], row["catchup"], row["max_catchup"]) == (
        "daily", "0 7 * * *", "Europe/Paris", {"n": "2"}, True, 5)
    assert row["start"] == "2026-02-28T23:00:00+00:00"  # a --start without offset is read in --timezone
    assert row["notify"] == ["failed=mailto:ops@example.com", "succeeded=https://hooks.example.com/…"]
    assert "s3cr3tkey" not in captured.out and row["warnings"] == []
    assert row["next_fire_time"].endswith(("T06:00:00+00:00", "T05:00:00+00:00"))  # 07:00 Paris
    assert row["last_run"] is None

    write_notebook(notebook, REPORT + "\n# edited")
    assert main(["schedule", "list"]) == 0
    captured = capsys.readouterr()
    assert "warning: schedule daily: notebook" in captured.err
    assert "changed since the schedule was added" in captured.err
    assert "daily" in captured.out

    assert main(["schedule", "pause", "daily"]) == 0
    assert _schedules(home)[0]["paused"] is True
    assert main(["schedule", "resume", "daily"]) == 0
    assert _schedules(home)[0]["paused"] is False
    assert main(["schedule", "remove", "daily"]) == 0
    assert main(["schedule", "remove", "daily"]) == 2
    assert "no schedule named `daily`" in capsys.readouterr().err


def test_rows_that_cannot_be_read_are_listed_as_invalid_and_the_others_as_usual(
        home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = spoiled_rows()
    for name in ["good", *bad]:
        assert main(["schedule", "add", str(notebook), "--name", name, "--every", "1h"]) == 0
    for name, (assignment, _) in bad.items():
        spoil(home, name, assignment)
    capsys.readouterr()
    assert main(["schedule", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["invalid"] is None and rows["good"]["next_fire_time"]
    for name, (_, why) in bad.items():
        assert why in rows[name]["invalid"] and rows[name]["next_fire_time"] is None, rows[name]
    assert main(["schedule", "list"]) == 0
    table = capsys.readouterr().out
    assert table.count("invalid: ") == len(bad) and "active" in table


def test_the_example_daily_report_can_be_scheduled(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import EXAMPLES

    assert main(["schedule", "add", str(EXAMPLES / "daily_report.ipynb"), "--cron", "0 7 * * *",
                 "--timezone", "Europe/Paris", "-p", "orders_per_day=50"]) == 0, capsys.readouterr().err
    assert _schedules(home)[0]["name"] == "daily_report"


def test_fire_times_are_shown_in_the_schedules_timezone(
        home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Humans read the wall time and zone where the schedule lives; `--json` keeps ISO 8601 in UTC."""
    for name, start in (("winter", "2030-12-02T00:00"), ("summer", "2030-07-01T00:00")):
        assert main(["schedule", "add", str(notebook), "--name", name, "--cron", "6 17 * * *",
                     "--timezone", "Europe/Paris", "--start", start]) == 0
    added = capsys.readouterr().out.splitlines()
    assert added[0].endswith("; next fire Mon 2 Dec, 17:06 CET"), added
    assert added[1].endswith("; next fire Mon 1 Jul, 17:06 CEST"), added

    assert main(["schedule", "list"]) == 0
    table = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if " active " in line}
    assert "Mon 2 Dec, 17:06 CET" in table["winter"] and "Mon 1 Jul, 17:06 CEST" in table["summer"], table
    assert main(["schedule", "list", "--json"]) == 0
    assert {r["name"]: r["next_fire_time"] for r in json.loads(capsys.readouterr().out)} == {
        "winter": "2030-12-02T16:06:00+00:00", "summer": "2030-07-01T15:06:00+00:00"}
