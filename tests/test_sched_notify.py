"""Notifications against a real HTTP server and a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.errors import UserInputError
from flyte_lab.scheduler.notify import Notifier, event_of, parse_targets, payload
from flyte_lab.store import RunStore
from tests.conftest import CLI, cli_env
from tests.sched_servers import http_endpoint, smtp_endpoint

SECRET = "pa55-w0rd-7c1e"


def _record(status: str = "failed", error_type: str = "ValueError") -> dict[str, Any]:
    error = {"type": error_type, "message": "bad stats 2", "cell": 5, "line": 3, "traceback": "…"}
    return {"run_id": "20260101-000000-abcdef", "notebook": "/home/me/daily.ipynb", "status": status,
            "params": {}, "schedule": "daily", "scheduled_time": "2026-03-08T07:00:00+00:00",
            "created_at": "2026-03-08T07:00:01+00:00", "started_at": "2026-03-08T07:00:02+00:00",
            "finished_at": "2026-03-08T07:00:09+00:00",
            "tasks": {"load": {"status": "succeeded", "error": None},
                      "boom": {"status": status, "error": error if status == "failed" else None}}}


@pytest.fixture
def store(home: Path):
    s = RunStore.from_env()
    yield s
    s.close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_LAB_NOTIFY_BACKOFF_S", "0.01")
    monkeypatch.setenv("FLYTE_LAB_NOTIFY_TIMEOUT_S", "0.5")


def test_payload_has_a_slack_text_and_the_run_summary() -> None:
    body = payload(_record(), "failed")
    assert body["text"] == ("flyte-lab: run 20260101-000000-abcdef of daily.ipynb (schedule `daily`, fire time "
                            "2026-03-08T07:00:00+00:00) failed: task `boom` (cell 5, line 3): ValueError: bad stats 2")
    assert body["tasks"] == {"load": "succeeded", "boom": "failed"} and body["event"] == "failed"
    assert body["error"] == {"task": "boom", "type": "ValueError", "message": "bad stats 2", "cell": 5, "line": 3}
    assert event_of(_record("succeeded")) == "succeeded"
    assert event_of(_record("failed", "Timeout")) == "timed_out"
    assert event_of(_record("running")) is None


def test_http_targets_get_the_event_they_asked_for(store: RunStore, fast_retries: None) -> None:
    with http_endpoint() as web:
        targets = parse_targets([f"succeeded={web.url}/ok", f"failed={web.url}/ok?token=t0ps3cret",
                                 f"timed_out={web.url}/ok"])
        Notifier(targets, store)(_record("failed", "Timeout"))
    # a timeout is a failure too: the failed target hears it, and the same URL is not told twice
    bodies = web.received["/ok?token=t0ps3cret"] + web.received.get("/ok", [])
    assert [b["event"] for b in bodies] == ["timed_out", "timed_out"]
    rows = store.notifications("20260101-000000-abcdef")
    assert [(r["event"], r["status"], r["attempts"]) for r in rows] == [("timed_out", "sent", 1)] * 2
    assert all("t0ps3cret" not in r["target"] for r in rows)  # query strings (tokens) are not stored


def test_a_failing_endpoint_is_retried_logged_and_recorded_and_never_raises(
        store: RunStore, fast_retries: None, caplog: pytest.LogCaptureFixture) -> None:
    with http_endpoint() as web:
        targets = parse_targets([f"failed={web.url}/fail", f"failed={web.url}/hang", "failed=http://127.0.0.1:9/x"])
        with caplog.at_level(logging.WARNING, logger="flyte_lab.notify"):
            Notifier(targets, store)(_record())
        assert len(web.received["/fail"]) == 3  # three attempts
        assert len(web.received["/hang"]) == 3  # each one timed out
    rows = store.notifications("20260101-000000-abcdef")
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 3)] * 3
    assert "HTTP 500" in rows[0]["error"] and "timed out" in rows[1]["error"] and "cannot reach" in rows[2]["error"]
    assert caplog.text.count("notification to") == 3


def test_client_errors_are_not_retried(store: RunStore, fast_retries: None) -> None:
    with http_endpoint() as web:
        Notifier(parse_targets([f"succeeded={web.url}/gone"]), store)(_record("succeeded"))
    assert len(web.received["/gone"]) == 1
    (row,) = store.notifications("20260101-000000-abcdef")
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "HTTP 404 Not Found")


def test_mail_goes_through_smtp_with_credentials_from_the_environment_never_logged(
        store: RunStore, fast_retries: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with smtp_endpoint("flyte", SECRET) as smtp:
        monkeypatch.setenv("FLYTE_LAB_SMTP_URL", smtp.url)
        monkeypatch.setenv("FLYTE_LAB_SMTP_USER", "flyte")
        monkeypatch.setenv("FLYTE_LAB_SMTP_PASSWORD", SECRET)
        with caplog.at_level(logging.DEBUG, logger="flyte_lab"):
            Notifier(parse_targets(["failed=mailto:ops@example.com,dev@example.com"]), store)(_record())
        assert smtp.logins == [("flyte", SECRET)]
        (message,) = smtp.messages
        assert message["to"] == ["ops@example.com", "dev@example.com"]
        assert "Subject: flyte-lab: run 20260101-000000-abcdef of daily.ipynb" in message["data"]
        assert '"event": "failed"' in message["data"]
        # a wrong password: recorded as failed, not retried, the password nowhere
        monkeypatch.setenv("FLYTE_LAB_SMTP_PASSWORD", "wrong-" + SECRET)
        Notifier(parse_targets(["failed=mailto:ops@example.com"]), store)(_record())
    rows = store.notifications("20260101-000000-abcdef")
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1), ("failed", 1)]
    assert "refused the login" in rows[1]["error"]
    assert SECRET not in caplog.text and SECRET not in json.dumps(rows)


def test_mail_without_an_smtp_server_configured_is_recorded(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYTE_LAB_SMTP_URL", raising=False)
    Notifier(parse_targets(["succeeded=mailto:ops@example.com"]), store)(_record("succeeded"))
    (row,) = store.notifications("20260101-000000-abcdef")
    assert row["status"] == "failed" and "FLYTE_LAB_SMTP_URL is not set" in row["error"]


def test_bad_targets_are_refused() -> None:
    for spec, says in (("failed", "EVENT=URL"), ("done=http://x", "EVENT one of"), ("failed=file:///etc/passwd",
                       "expected an http"), ("failed=mailto:nobody", "expected an http")):
        with pytest.raises(UserInputError, match=says):
            parse_targets([spec])


@pytest.mark.cluster
def test_run_with_notify_a_timed_out_run_and_a_failing_endpoint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell("%%flyte_setup\nimport time"),
                new_code_cell("%%flyte_task slow() -> x: int --timeout 1s\nwhile True:\n    time.sleep(0.05)\nx = 1")]
    path = tmp_path / "slow.ipynb"
    nbformat.write(nb, path)
    env = cli_env(home)
    env.update(FLYTE_LAB_NOTIFY_BACKOFF_S="0.01", FLYTE_LAB_NOTIFY_TIMEOUT_S="2")
    with http_endpoint() as web:
        proc = subprocess.run([*CLI, "run", str(path), "--json", "--notify", f"timed_out={web.url}/ok",
                               "--notify", f"failed={web.url}/fail", "--notify", f"succeeded={web.url}/never"],
                              capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 1, proc.stderr  # the run's own outcome; the failing endpoint changes nothing
    run = json.loads(proc.stdout)
    assert run["tasks"]["slow"]["error"]["type"] == "TaskTimeout"
    (body,) = web.received["/ok"]
    assert body["event"] == "timed_out" and body["run_id"] == run["run_id"] and "timed out" in body["text"]
    assert len(web.received["/fail"]) == 3 and "/never" not in web.received
    with RunStore.from_env(home) as store:
        rows = store.notifications(run["run_id"])
    assert sorted((r["status"], r["attempts"]) for r in rows) == [("failed", 3), ("sent", 1)]


def test_run_refuses_a_bad_notify_before_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.run([*CLI, "run", str(tmp_path / "x.ipynb"), "--notify", "failed=gopher://x"],
                          capture_output=True, text=True, env=cli_env(home), timeout=60)
    assert proc.returncode == 2 and "expected an http://, https:// or mailto:" in proc.stderr
