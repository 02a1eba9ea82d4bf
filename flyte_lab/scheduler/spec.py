"""The one schedule spec: what `schedule add`, `POST /flyte-lab/api/schedules` and the preview take.

`ScheduleSpec` (pydantic) is the CLI's `schedule add` arguments, the REST body and, through its timing
part `ScheduleTiming`, the preview's query; its JSON Schema (defaults, descriptions, choices, bounds) is
what the sidebar's schedule form is drawn from (`GET /flyte-lab/api/config`). Its validators hold every
check that needs no file and raise the checks' own `UserInputError` (pydantic lets any exception but
`ValueError` through, so their words reach the user unchanged); `parse` turns pydantic's own refusals (a
type, a bound, a choice) into the same kind of line, naming the argument as `schedule add` spells it
(`--max-active`, `-p NAME`), whoever asked.
`row()` adds the checks that read the notebook (after the REST layer has confined its path to the root)
and makes the store row: a notebook that is missing or does not validate, a `-p` that names no workflow
input or does not parse as its type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flyte_lab.errors import ParameterError, UserInputError, ValidationFailed
from flyte_lab.notebook_hash import hash_notebook
from flyte_lab.scheduler import checks, timing
from flyte_lab.scheduler.notify import EVENTS, parse_targets

SCHEDULED_TIME = "scheduled_time"
Overlap = Literal["skip", "queue"]
# far above any real use, and within every store's integer column
MAX_CATCHUP = 10_000
MAX_ACTIVE = 1_000
# the arguments whose `schedule add` spelling is not `--` + the field name
_ARGUMENTS = {"path": "path", "params": "-p"}


def argument(field: str) -> str:
    """How `schedule add` spells a field (`--max-active`, `-p`); messages name it so, whoever asked."""
    return _ARGUMENTS.get(field, "--" + field.replace("_", "-"))


def _absent_if_empty(value: Any) -> Any:
    return None if value == "" else value


# an empty text is an argument not given: what a form sends for an input left blank
OptionalText = Annotated[str | None, BeforeValidator(_absent_if_empty)]


class ScheduleTiming(BaseModel):
    """When a schedule fires: the preview's query, and the first fields of `ScheduleSpec`."""

    model_config = ConfigDict(extra="forbid")

    cron: OptionalText = Field(None, description="five cron fields or an alias", examples=["0 7 * * *", "@hourly"])
    every: OptionalText = Field(None, description="a fixed rate counted from --start",
                                examples=["30s", "15m", "2h", "1d"])
    timezone: str = Field("UTC", description="IANA name the cron is read in", examples=["Europe/Paris"])
    start: OptionalText = Field(None, description="the first fire is at or after this ISO-8601 time, read in "
                                "--timezone unless it has an offset (default: now)", examples=["2026-03-08T07:00"])
    _when: checks.When | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _fires(self, info: ValidationInfo) -> Self:
        """The timing rules of `checks`, at the `now` given to `parse` (else the clock)."""
        now = (info.context or {}).get("now") or datetime.now(UTC)
        self._when = checks.parse_when(self.cron, self.every, self.timezone, self.start, now)
        return self

    @property
    def when(self) -> checks.When:
        assert self._when is not None  # set by `_fires` on every validated instance
        return self._when

    @classmethod
    def parse(cls, data: Any, now: datetime | None = None) -> Self:
        """The checked spec; `UserInputError` (one line, naming the argument) for the first refusal."""
        try:
            return cls.model_validate(data, context={"now": now})
        except ValidationError as exc:
            raise _refusal(cls, exc) from None

    @classmethod
    def help_text(cls, field: str) -> str:
        """The field's description, examples and default, as `schedule add --help` shows them."""
        info = cls.model_fields[field]
        examples = f", e.g. {', '.join(info.examples)}" if info.examples else ""
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = f" (default {default})" if default not in (None, False, [], {}) else ""
        return f"{info.description}{examples}{shown}"


class ScheduleSpec(ScheduleTiming):
    """A schedule as `schedule add` and the REST API take it; checked by its validators on creation."""

    path: str = Field(description="the notebook (REST: its path relative to the Jupyter root)")
    name: OptionalText = Field(None, description="unique name (default: the notebook's file name without .ipynb)")
    params: dict[str, str] = Field(default_factory=dict, description="a workflow input value as launch text, "
                                   "by name (repeatable: -p NAME=VALUE)", json_schema_extra={
                                       "reserved": [SCHEDULED_TIME]})  # the scheduler passes each fire time
    catchup: bool = Field(False, description="run every fire time missed while no scheduler ran")
    max_catchup: int = Field(50, ge=1, le=MAX_CATCHUP, description="at most this many missed fire times")
    max_active: int = Field(1, ge=1, le=MAX_ACTIVE, description="most runs of this schedule at once")
    overlap: Overlap = Field("skip", description="at --max-active: skip the fire time, or queue it until a "
                             "run ends")
    notify: list[str] = Field(default_factory=list, description=f"{'|'.join(EVENTS)}=http(s)://… or mailto:… "
                              "(repeatable)", json_schema_extra={"events": list(EVENTS)})

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return None if name is None else check_name(name)

    @field_validator("notify")
    @classmethod
    def _targets(cls, notify: list[str]) -> list[str]:
        return [t.spec for t in parse_targets(notify)]

    def row(self) -> dict[str, Any]:
        """The store row, once the notebook takes these `-p` values and the fire time."""
        when = self.when
        path = Path(self.path).expanduser()
        name = self.name or check_name(path.stem)
        check_notebook(str(path), self.params, when.fires[0].astimezone(when.tz))
        return {
            "name": name,
            "notebook": str(path.resolve()),
            "notebook_hash": hash_notebook(path),
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
            "notify": list(self.notify),
        }


def check_name(name: str) -> str:
    if not name or len(name) > 200 or any(c.isspace() or c == "/" for c in name):
        raise UserInputError(f"--name `{name}`: a schedule name is 1-200 characters without spaces or `/`")
    return name


def _refusal(model: type[BaseModel], exc: ValidationError) -> UserInputError:
    """Pydantic's first error as the one line the CLI would print (the validators raise theirs directly)."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    got, kind, message = error.get("input"), error["type"], error["msg"]
    if not loc:  # the whole spec: not an object, or a model validator's ValueError
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return UserInputError(f"a schedule is an object of its arguments ({', '.join(model.model_fields)})")
        return UserInputError(message)
    if kind == "extra_forbidden":
        return UserInputError(f"`{loc[0]}`: not a schedule argument; expected {', '.join(model.model_fields)}")
    what = " ".join([argument(loc[0]), *loc[1:]])
    if kind == "missing":
        return UserInputError(f"{what}: required")
    field = model.model_fields[loc[0]]
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = (next(getattr(m, bound) for m in field.metadata if hasattr(m, bound)) for bound in ("ge", "le"))
        return UserInputError(f"{what} must be at least {low} and at most {high}, got {got}")
    if kind == "literal_error" and get_origin(field.annotation) is Literal:
        return UserInputError(f"{what} `{got}`: expected one of {', '.join(get_args(field.annotation))}")
    return UserInputError(f"{what} `{got}`: {message[:1].lower()}{message[1:]}")


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
