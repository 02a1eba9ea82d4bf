"""Notifications about finished runs: `--notify EVENT=URL` for `succeeded`, `failed`, `timed_out`.

An `http(s)://` target gets a POST of the run summary as JSON, with a Slack-compatible
`text` field; a `mailto:` target gets a mail through the SMTP server at
`FLYTE_LAB_SMTP_URL` (`smtp://host:port`, `smtp+starttls://…` or `smtps://…`), logging
in with `FLYTE_LAB_SMTP_USER` / `FLYTE_LAB_SMTP_PASSWORD` when set. Credentials and
URL user info never reach a log line or the store.

A failing target is retried (`FLYTE_LAB_NOTIFY_RETRIES`, default 3 attempts, with a
`FLYTE_LAB_NOTIFY_TIMEOUT_S` timeout each, default 10 s), then logged and recorded in
the store's `notifications` table. A notification never fails the run it reports.
A run that failed because a task timed out is the `timed_out` event; `failed`
targets hear about it too (a timeout is a failure).
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flyte_lab.errors import UserInputError
from flyte_lab.statuses import RunStatus, TaskStatus

log = logging.getLogger("flyte_lab.notify")

EVENTS = ("succeeded", "failed", "timed_out")
SCHEMES = ("http", "https", "mailto")


class DeliveryError(Exception):
    """A target could not be reached or refused the notification."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Target:
    event: str
    url: str

    @property
    def spec(self) -> str:
        return f"{self.event}={self.url}"

    @property
    def shown(self) -> str:
        return redact(self.url)

    def hears(self, event: str) -> bool:
        return self.event == event or (self.event == "failed" and event == "timed_out")


def redact(url: str) -> str:
    """The URL without user info, query or path (which often carry tokens: Slack webhook paths do)."""
    parts = urlsplit(url)
    if parts.scheme == "mailto":
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, "/…" if parts.path not in ("", "/") else parts.path, "", ""))


def parse_targets(specs: list[str]) -> list[Target]:
    """`EVENT=URL` items, checked; a bad one is refused before anything runs or is stored."""
    targets = []
    for item in specs:
        event, sep, url = item.partition("=")
        event = event.strip()
        if not sep or event not in EVENTS:
            raise UserInputError(f"--notify {redact(item.partition('=')[2]) if sep else item}: must read "
                                 f"`--notify EVENT=URL` with EVENT one of {', '.join(EVENTS)}")
        parts = urlsplit(url.strip())
        if parts.scheme not in SCHEMES or (parts.scheme != "mailto" and not parts.hostname) or (
                parts.scheme == "mailto" and "@" not in parts.path):
            raise UserInputError(f"--notify {event}={redact(url)}: expected an http://, https:// or "
                                 f"mailto:NAME@HOST URL")
        targets.append(Target(event, url.strip()))
    return targets


def event_of(record: dict[str, Any]) -> str | None:
    """The event a finished run is: `succeeded`, `timed_out`, `failed`; None while it is not finished."""
    status = record.get("status")
    if status == RunStatus.SUCCEEDED:
        return "succeeded"
    if status != RunStatus.FAILED:
        return None
    errors = [(t.get("error") or {}).get("type") for t in record.get("tasks", {}).values()]
    timed_out = any(kind in ("TaskTimeout", "Timeout") for kind in errors)
    return "timed_out" if timed_out else "failed"


def payload(record: dict[str, Any], event: str) -> dict[str, Any]:
    """The run summary JSON, with a one-paragraph `text` for Slack-compatible webhooks."""
    failed = [(name, t["error"]) for name, t in record.get("tasks", {}).items()
              if t.get("status") == TaskStatus.FAILED and t.get("error")]
    error = None
    if failed:
        name, err = failed[0]
        error = {"task": name, "type": err.get("type"), "message": err.get("message"),
                 "cell": err.get("cell"), "line": err.get("line")}
    elif record.get("error"):
        error = {"task": None, **{k: record["error"].get(k) for k in ("type", "message")}}
    notebook = os.path.basename(str(record.get("notebook", "")))
    origin = (f" (schedule `{record['schedule']}`, fire time {record.get('scheduled_time')})"
              if record.get("schedule") else "")
    text = f"flyte-lab: run {record['run_id']} of {notebook}{origin} {event.replace('_', ' ')}"
    if error is not None:
        where = f"task `{error['task']}` (cell {error.get('cell')}, line {error.get('line')}): " if error.get(
            "task") else ""
        text += f": {where}{error.get('type')}: {error.get('message')}"
    return {
        "text": text,
        "event": event,
        **{k: record.get(k) for k in ("run_id", "notebook", "status", "schedule", "scheduled_time",
                                      "created_at", "started_at", "finished_at")},
        "tasks": {name: t.get("status") for name, t in record.get("tasks", {}).items()},
        "error": error,
    }


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def post_json(url: str, body: dict[str, Any], timeout: float) -> None:
    # the scheme was checked to be http(s) by parse_targets
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json", "User-Agent": "flyte-lab"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        retry = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", retry=retry) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"cannot reach {redact(url)}: {reason}") from None


def send_mail(url: str, body: dict[str, Any], timeout: float) -> None:
    server = os.environ.get("FLYTE_LAB_SMTP_URL")
    if not server:
        raise DeliveryError("FLYTE_LAB_SMTP_URL is not set; set it to smtp://HOST:PORT to send mail", retry=False)
    parts = urlsplit(server)
    if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
        raise DeliveryError(f"FLYTE_LAB_SMTP_URL {redact(server)}: expected smtp://HOST:PORT, "
                            f"smtp+starttls://HOST:PORT or smtps://HOST:PORT", retry=False)
    recipients = [r.strip() for r in urlsplit(url).path.split(",") if r.strip()]
    message = EmailMessage()
    message["From"] = os.environ.get("FLYTE_LAB_SMTP_FROM") or f"flyte-lab@{socket.gethostname()}"
    message["To"] = ", ".join(recipients)
    message["Subject"] = body["text"].splitlines()[0][:200]
    message.set_content(body["text"] + "\n\n" + json.dumps(body, indent=2))
    smtp_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    user, password = os.environ.get("FLYTE_LAB_SMTP_USER"), os.environ.get("FLYTE_LAB_SMTP_PASSWORD")
    try:
        with smtp_class(parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25),
                        timeout=timeout) as smtp:
            if parts.scheme == "smtp+starttls":
                smtp.starttls()
            if user:
                smtp.login(user, password or "")
            smtp.send_message(message, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP server {redact(server)} refused the login ({exc.smtp_code})", retry=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        # the exception text is the server's reply or a socket error, never our credentials
        raise DeliveryError(f"SMTP server {redact(server)}: {type(exc).__name__}: {exc}") from None


def deliver(target: Target, body: dict[str, Any]) -> int:
    """Send with retries; returns the attempts it took, raises `DeliveryError` after the last."""
    attempts = max(1, int(_env_float("FLYTE_LAB_NOTIFY_RETRIES", 3)))
    timeout = _env_float("FLYTE_LAB_NOTIFY_TIMEOUT_S", 10.0)
    backoff = _env_float("FLYTE_LAB_NOTIFY_BACKOFF_S", 0.5)
    send = send_mail if target.url.startswith("mailto:") else post_json
    for attempt in range(1, attempts + 1):
        try:
            send(target.url, body, timeout)
            return attempt
        except DeliveryError as exc:
            if not exc.retry or attempt == attempts:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            time.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


class Notifier:
    """The `on_finished` hook of a run: tells each target that hears the run's event; never raises."""

    def __init__(self, targets: list[Target], store: Any = None) -> None:
        self.targets = targets
        self.store = store

    def __call__(self, record: dict[str, Any]) -> None:
        try:
            self._notify(record)
        except Exception:  # a notification never fails the run it reports
            log.exception("notifications for run %s failed", record.get("run_id"))

    def _notify(self, record: dict[str, Any]) -> None:
        event = event_of(record)
        if event is None:
            return
        body = payload(record, event)
        seen: set[str] = set()
        for target in self.targets:
            if not target.hears(event) or target.url in seen:
                continue
            seen.add(target.url)
            try:
                attempts = deliver(target, body)
            except DeliveryError as exc:
                attempts = getattr(exc, "attempts", 1)
                log.warning("run %s: %s notification to %s failed after %d attempt(s): %s",
                            record["run_id"], event, target.shown, attempts, exc)
                self._record(record["run_id"], event, target, "failed", attempts, str(exc))
            else:
                log.info("run %s: %s notification sent to %s", record["run_id"], event, target.shown)
                self._record(record["run_id"], event, target, "sent", attempts, None)

    def _record(self, run_id: str, event: str, target: Target, status: str, attempts: int,
                error: str | None) -> None:
        if self.store is None:
            from flyte_lab.store import RunStore

            self.store = RunStore.from_env()
        self.store.record_notification(run_id, event, target.shown, status, attempts, error)
