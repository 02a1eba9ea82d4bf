"""`schedule add`: every argument checked before anything is stored, then one store row.

A refusal is a `UserInputError` (exit 2, one line) naming the argument and what to
write instead: a cron, interval, timezone or start that `checks` refuses, a notebook
that is missing or does not validate, a `-p` that names no workflow input or does not
parse as its type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flyte_lab.errors import ParameterError, UserInputError, ValidationFailed
from flyte_lab.scheduler import checks, timing
from flyte_lab.scheduler.notify import parse_targets
from flyte_lab.scheduler.overview import content_hash

SCHEDULED_TIME = "scheduled_time"
OVERLAP_POLICIES = ("skip", "queue")
# far above any real use, and within every store's integer column
MAX_CATCHUP = 10_000
MAX_ACTIVE = 1_000


@dataclass
class ScheduleSpec:
    """What `schedule add` was asked, before checking."""

    notebook: str
    cron: str | None = None
    every: str | None = None
    name: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    timezone: str = "UTC"
    catchup: bool = False
    max_catchup: int = 50
    max_active: int = 1
    overlap: str = "skip"
    notify: list[str] = field(default_factory=list)

    def row(self, now: datetime | None = None) -> dict[str, Any]:
        """The checked store row; raises `UserInputError` on the first bad argument."""
        now = now or datetime.now(UTC)
        when = checks.parse_when(self.cron, self.every, self.timezone, self.start, now)
        for flag, value, most in (("--max-catchup", self.max_catchup, MAX_CATCHUP),
                                  ("--max-active", self.max_active, MAX_ACTIVE)):
            if not 1 <= value <= most:
                raise UserInputError(f"{flag} must be at least 1 and at most {most}, got {value}")
        if self.overlap not in OVERLAP_POLICIES:
            raise UserInputError(f"--overlap `{self.overlap}`: expected one of {', '.join(OVERLAP_POLICIES)}")
        targets = parse_targets(self.notify)
        path = Path(self.notebook).expanduser()
        name = self.name or path.stem
        if not name or len(name) > 200 or any(c.isspace() or c == "/" for c in name):
            raise UserInputError(f"--name `{name}`: a schedule name is 1-200 characters without spaces or `/`")
        check_notebook(str(path), self.params, when.fires[0].astimezone(when.tz))
        return {
            "name": name,
            "notebook": str(path.resolve()),
            "notebook_hash": content_hash(path),
            "cron": when.cron,
            "every_s": when.every_s,
            "timezone": self.timezone,
            "params": dict(self.params),
            "start_at": when.start.replace(tzinfo=None),
            "catchup": self.catchup,
            "max_catchup": self.max_catchup,
            "max_active": self.max_active,
            "overlap": self.overlap,
            "paused": False,
            "notify": [t.spec for t in targets],
        }


def check_notebook(path: str, params: dict[str, str], example_fire: datetime) -> None:
    """The notebook exists, validates for a launch with these `-p` values, and can take the fire time."""
    from flyte_lab.graph.validate import resolve_params, validate_notebook

    if not Path(path).is_file():
        raise UserInputError(f"{path}: no such notebook; give the path of an .ipynb file")
    if SCHEDULED_TIME in params:
        raise ParameterError(f"-p {SCHEDULED_TIME}: the scheduler sets `{SCHEDULED_TIME}` to each fire time; "
                             f"drop this -p")
    probe = validate_notebook(path)
    values: dict[str, Any] = dict(params)
    if SCHEDULED_TIME in probe.workflow_inputs:
        values[SCHEDULED_TIME] = example_fire.isoformat()
    wf = validate_notebook(path, cli_params=values, launching=True)
    if wf.errors:
        first = wf.errors[0]
        more = f" (and {len(wf.errors) - 1} more; `flyte-lab validate {path}` lists them)" if len(wf.errors) > 1 else ""
        raise ValidationFailed(first.format(path) + more, diagnostics=[d.as_json() for d in wf.diagnostics])
    try:
        resolve_params(wf, values)
    except ParameterError as exc:
        if exc.message.startswith(f"-p {SCHEDULED_TIME}="):
            declared = wf.workflow_inputs[SCHEDULED_TIME].type.display()
            raise ParameterError(f"workflow input `{SCHEDULED_TIME}: {declared}` of {path}: the scheduler passes "
                                 f"the fire time, so declare it `datetime` or `str`") from None
        raise


def fire_params(schedule: dict[str, Any], declared: set[str], fire: datetime) -> dict[str, Any]:
    """The launch values of one fire: the schedule's `-p` values, plus the fire time if the notebook takes it."""
    values: dict[str, Any] = dict(schedule["params"])
    if SCHEDULED_TIME in declared:
        values[SCHEDULED_TIME] = fire.astimezone(timing.zone(schedule["timezone"])).isoformat()
    return values
