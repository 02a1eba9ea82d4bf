"""One schedule spec (`scheduler/spec.py`): `schedule add`, `POST /schedules` and the preview refuse the same bad
spec in the same words, and the sidebar's schedule form is drawn from the spec the server serves.

CLI in this process (`main`), REST and preview through a real jupyter_server, one store (the test's home).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flyte_lab.cli.main import main
from flyte_lab.errors import UserInputError
from flyte_lab.store import RunStore
from tests.conftest import NOTEBOOKS

TIMING = ("cron", "every", "timezone", "start")  # what the preview takes


def cli_argv(notebook: Path, fields: dict[str, Any]) -> list[str]:
    """`schedule add` with these spec fields, spelled as its options (`--opt=VALUE`: empty and `-1s` pass)."""
    argv = ["schedule", "add", str(notebook)]
    for key, value in fields.items():
        if key == "params":
            argv += [a for name, text in value.items() for a in ("-p", f"{name}={text}")]
        elif key == "notify":
            argv += [f"--notify={target}" for target in value]
        elif isinstance(value, bool):
            argv += [f"--{key}"] if value else []
        else:
            argv.append(f"--{key.replace('_', '-')}={value}")
    return argv


def cli_refusal(capsys: pytest.CaptureFixture[str], notebook: Path, fields: dict[str, Any]) -> str | None:
    """The one line `schedule add` refuses these fields with (exit 2), or None when it stores the schedule."""
    capsys.readouterr()
    code = main(cli_argv(notebook, fields))
    err = capsys.readouterr().err
    if code == 0:
        return None
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    prefix = "flyte-lab: error: "
    assert err.startswith(prefix), err
    return err.strip()[len(prefix):]


def stored(home: Path) -> list[dict[str, Any]]:
    with RunStore.from_env(home) as store:
        return store.list_schedules()


def as_json(response: Any) -> Any:
    return json.loads(response.body)


# (spec fields besides the notebook, what the one line says); values as `schedule add` gets them: text
BAD_SPECS = [
    ({"cron": "61 * * * *"}, "--cron `61 * * * *`: "),
    ({"every": "soon"}, "--every `soon`: expected a positive number and a unit"),
    ({"every": "0.5s"}, "--every `0.5s`: an interval is at least 1s"),
    ({"cron": "0 0 30 2 *", "timezone": "Europe/Paris"}, "never fires"),
    ({"every": "1h", "timezone": "Mars/Olympus"}, "--timezone `Mars/Olympus`: not a timezone zoneinfo knows"),
    ({"every": "1h", "timezone": ""}, "--timezone ``: not a timezone zoneinfo knows"),
    ({"every": "1h", "start": "next tuesday"}, "--start `next tuesday`: not an ISO-8601 time"),
    ({"every": "1h", "start": "1900-01-01"}, "a schedule starts on 1970-01-01 or later"),
    # an empty text is an argument not given (REST said so; the CLI and the preview read `--cron ""` as a cron)
    ({"cron": ""}, 'give exactly one of --cron "EXPR" or --every INTERVAL'),
    ({"every": ""}, 'give exactly one of --cron "EXPR" or --every INTERVAL'),
    # argparse refused these itself, in its own words, over several lines (usage first)
    ({}, 'give exactly one of --cron "EXPR" or --every INTERVAL'),
    ({"cron": "@daily", "every": "1h"}, 'give exactly one of --cron "EXPR" or --every INTERVAL'),
    ({"every": "1h", "max_active": "0"}, "--max-active must be at least 1 and at most 1000, got 0"),
    ({"every": "1h", "max_catchup": "10001"}, "--max-catchup must be at least 1 and at most 10000, got 10001"),
    # argparse refused these in its own words, over several lines; REST in pydantic's (`invalid request: ...`)
    ({"every": "1h", "max_active": "2.5"}, "--max-active `2.5`: input should be a valid integer"),
    ({"every": "1h", "max_catchup": "many"}, "--max-catchup `many`: input should be a valid integer"),
    ({"every": "1h", "overlap": "never"}, "--overlap `never`: expected one of skip, queue"),
    ({"every": "1h", "name": "two words"}, "--name `two words`: a schedule name is 1-200 characters"),
    ({"every": "1h", "notify": ["finished=https://hooks.example.com/x"]}, "EVENT one of succeeded, failed, timed_out"),
    ({"every": "1h", "notify": ["failed=ftp://x/y"]}, "expected an http://, https:// or mailto:NAME@HOST URL"),
    ({"every": "1h", "params": {"n": "many"}}, "-p n=many: expects int"),
    ({"every": "1h", "params": {"scheduled_time": "2026-01-01"}}, "the scheduler sets `scheduled_time`"),
]


@pytest.mark.parametrize(("fields", "says"), BAD_SPECS)
async def test_a_bad_spec_is_refused_in_the_same_words_by_the_cli_rest_and_the_preview(
        home: Path, root: Path, fetch: Any, capsys: pytest.CaptureFixture[str], fields: dict[str, Any],
        says: str) -> None:
    line = cli_refusal(capsys, root / "valid_pipeline.ipynb", fields)
    assert line is not None and says in line, line
    posted = await fetch("schedules", method="POST", body={"path": "valid_pipeline.ipynb", **fields})
    assert posted.code == 400, posted.body
    assert as_json(posted) == {"message": line}
    if set(fields) <= set(TIMING):
        previewed = await fetch("schedules/preview", params=fields)
        assert previewed.code == 400, previewed.body
        assert as_json(previewed) == {"message": line}
    assert stored(home) == []


async def test_the_sidebar_form_takes_the_defaults_a_schedule_gets(home: Path, root: Path, fetch: Any) -> None:
    config = await fetch("config")
    assert config.code == 200
    spec = as_json(config)["schedule_spec"]
    fields = spec["properties"]
    defaults = {name: field["default"] for name, field in fields.items() if "default" in field}
    # a schedule given only its notebook and timing gets exactly the defaults the form shows
    created = await fetch("schedules", method="POST", body={"path": "valid_pipeline.ipynb", "every": "1h"})
    assert created.code == 201, created.body
    [row] = stored(home)
    assert {k: row[k] for k in ("timezone", "catchup", "max_catchup", "max_active", "overlap", "notify", "params")} \
        == {k: defaults.get(k, {"notify": [], "params": {}}.get(k)) for k in (
            "timezone", "catchup", "max_catchup", "max_active", "overlap", "notify", "params")}
    assert defaults["cron"] is None and defaults["every"] is None and spec["required"] == ["path"]
    # its choices and bounds are the ones the server holds the form's values to
    assert fields["overlap"]["enum"] == ["skip", "queue"]
    assert fields["params"]["reserved"] == ["scheduled_time"]
    for name in ("max_catchup", "max_active"):
        low, high = fields[name]["minimum"], fields[name]["maximum"]
        for value, code in ((low, 201), (high, 201), (low - 1, 400), (high + 1, 400)):
            answer = await fetch("schedules", method="POST", body={
                "path": "valid_pipeline.ipynb", "every": "1h", "name": f"{name}-{value}".replace("_", "-"),
                name: value})
            assert answer.code == code, (name, value, answer.body)
    for event_name in fields["notify"]["events"]:
        target = f"{event_name}=https://hooks.example.com/x"
        answer = await fetch("schedules", method="POST", body={
            "path": "valid_pipeline.ipynb", "every": "1h", "name": f"notify-{event_name}", "notify": [target]})
        assert answer.code == 201, answer.body
    for name, field in fields.items():  # the form labels its inputs with these
        assert field.get("description"), name


# -- the same, for specs hypothesis makes up: `schedule add` against the functions the REST handlers call ---------

TEXT_FIELDS = {
    "cron": st.sampled_from(["0 7 * * *", "@hourly", "61 * * * *", "0 0 30 2 *", "", "* * *", "0 0 29 2 *"]),
    "every": st.sampled_from(["15m", "1s", "0s", "0.5s", "3654d", "", "soon", "-1s", "1e400s", "2h"]),
    "timezone": st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Mars/Olympus", "", "Europe"]),
    "start": st.sampled_from(["2030-01-01T06:00", "1969-12-31T23:00", "9999-12-31T23:59:58", "next tuesday", "",
                              "10000-01-01", "2030-01-01T06:00:00+05:00"]),
    "name": st.sampled_from(["nightly", "two words", "a/b", "", "x" * 201]),
    "max_catchup": st.one_of(st.integers(-2, 10_002).map(str), st.sampled_from(["2.5", "many", "", "1e3"])),
    "max_active": st.one_of(st.integers(-2, 1_002).map(str), st.sampled_from(["2.5", "one", ""])),
    "overlap": st.sampled_from(["skip", "queue", "never", "", "SKIP"]),
}
SPECS = st.fixed_dictionaries({}, optional={
    **TEXT_FIELDS,
    "catchup": st.booleans(),
    "params": st.sampled_from([{"n": "3"}, {"n": "many"}, {"colour": "red"}, {"scheduled_time": "x"}]),
    "notify": st.lists(st.sampled_from(["failed=https://hooks.example.com/x", "succeeded=mailto:t@example.com",
                                        "finished=http://x", "failed=ftp://x", "failed"]), max_size=2),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=SPECS)
def test_any_spec_gets_the_same_answer_from_the_cli_rest_and_the_preview(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, Any]) -> None:
    from flyte_lab.server import service

    notebook = tmp_path / "valid_pipeline.ipynb"
    if not notebook.exists():
        notebook.write_bytes((NOTEBOOKS / "valid_pipeline.ipynb").read_bytes())
    now = datetime.now(UTC)
    line = cli_refusal(capsys, notebook, fields)
    for row in stored(home):  # accepted: made again over REST under the same name
        with RunStore.from_env(home) as store:
            store.remove_schedule(row["name"])
    try:
        answer = service.add_schedule(str(tmp_path), {"path": notebook.name, **fields}, now)
    except UserInputError as exc:
        assert exc.message == line, fields
        event("refused")
    else:
        assert line is None, (fields, line)
        assert answer["path"] == notebook.name
        with RunStore.from_env(home) as store:
            store.remove_schedule(answer["name"])
        event("accepted")
    timing = {k: v for k, v in fields.items() if k in TIMING}
    if timing == fields:
        try:
            service.preview(timing, now)
        except UserInputError as exc:
            assert exc.message == line, fields
        else:
            assert line is None, (fields, line)
