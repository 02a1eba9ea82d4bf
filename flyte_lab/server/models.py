"""Request and response bodies of the REST API (pydantic): what the browser may send, checked once."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CLUSTER_PATTERN = r"^(shared|local|k8s|tcp://[A-Za-z0-9.\-\[\]:]+)$"
# deeper bodies are refused before anything reads them: nbformat's validator recurses per level and
# fails near 300 (a notebook's own JSON nests about 10 deep)
MAX_BODY_DEPTH = 100


def too_deep(data: Any) -> bool:
    """Whether lists and objects nest deeper than MAX_BODY_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > MAX_BODY_DEPTH:
                return True
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphRequest(_Body):
    """Validate the editor's current content (unsaved) of the notebook at `path`."""

    path: str
    content: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)


class SelectBody(_Body):
    """`flyte-lab run`'s `--only` (a list), `--from`, `--to` (`graph/selection.Selection`, checked there)."""

    only: list[str] = Field(default_factory=list, max_length=10_000)
    from_task: str | None = Field(default=None, alias="from")
    to: str | None = None

    @staticmethod
    def request(select: SelectBody | None) -> dict[str, Any] | None:
        """As `run_launch`'s requests carry it (`{"only", "from", "to"}`), None for a whole run."""
        return select.model_dump(by_alias=True) if select is not None else None


class RunRequest(_Body):
    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    cluster: str = Field(default="shared", pattern=CLUSTER_PATTERN)
    workers: int | None = Field(default=None, ge=1, le=1024)
    no_cache: bool = False
    select: SelectBody | None = None  # a partial run (issue 19); with `reuse` / `allow_changed` as on the CLI
    reuse: str | None = None
    allow_changed: bool = False


class ResumeRequest(_Body):
    cluster: str | None = Field(default=None, pattern=CLUSTER_PATTERN)


class CancelRequest(_Body):
    """Who is cancelling: the sidebar says so; any other client is recorded as the REST API."""

    by: Literal["sidebar", "rest"] = "rest"


class RelaunchRequest(_Body):
    """A new run of the run's notebook with its parameters and cluster (`run_launch`'s `relaunch`); `select` makes
    it a partial run, as in `RunRequest`."""

    select: SelectBody | None = None


class RunCreated(BaseModel):
    run_id: str


class CancelAnswer(BaseModel):
    run_id: str
    state: str


class FirePreview(BaseModel):
    timezone: str
    fire_times: list[str]


class ErrorBody(BaseModel):
    message: str
    diagnostics: list[dict[str, Any]] | None = None
