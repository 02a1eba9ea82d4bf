"""The graph as plain data: what parsing and validation produce, what the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TypeRef:
    """A type annotation resolved statically to qualified names.

    `name` is the qualified base (`int`, `list`, `pandas.DataFrame`,
    `typing.Optional`, `__setup__.Point` for a class defined in a setup cell);
    `args` are its parameters; `text` is the annotation as written.
    `columns` is set for `pandera.typing.DataFrame[Schema]` when the schema's
    columns are known from the setup cells.
    """

    name: str
    args: tuple[TypeRef, ...] = ()
    text: str = ""
    columns: frozenset[str] | None = None
    # "dataclass" / "enum" / "schema" for classes defined in setup cells
    defined_as: str | None = None

    def display(self) -> str:
        return self.text or self.canonical()

    def canonical(self) -> str:
        base = self.name.removeprefix("builtins.").removeprefix("__setup__.")
        if not self.args:
            return base
        return f"{base}[{', '.join(a.canonical() for a in self.args)}]"


@dataclass(frozen=True)
class Param:
    """One input or output of a task."""

    name: str
    type: TypeRef
    has_default: bool = False
    default: Any = None


@dataclass(frozen=True)
class TaskOptions:
    cpu: float | None = None
    mem: str | None = None
    gpu: int | None = None
    retries: int = 0
    timeout_s: float | None = None
    cache: bool = False
    cache_version: str | None = None
    image: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    map_over: str | None = None
    batch: int | None = None  # map-over elements per kernel (None: chosen by the driver, `engine/element_batches`)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("cpu", "mem", "gpu", "image", "cache_version", "map_over", "batch", "timeout_s"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.retries:
            out["retries"] = self.retries
        if self.cache:
            out["cache"] = True
        if self.env:
            # secret references are shown by name, never by value
            out["env"] = {k: v for k, v in self.env}
        return out

    def resources(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cpu is not None:
            out["cpu"] = self.cpu
        if self.mem is not None:
            out["mem"] = self.mem
        if self.gpu is not None:
            out["gpu"] = self.gpu
        return out


@dataclass(frozen=True)
class HeaderSpec:
    """What the `%%flyte_task` header line(s) say, before types are resolved."""

    name: str
    inputs: tuple[tuple[str, str, bool, Any], ...]  # (name, annotation text, has_default, default)
    outputs: tuple[tuple[str, str], ...]  # (name, annotation text)
    options: TaskOptions
    header_lines: int  # lines the header spans (backslash continuations)


@dataclass
class Task:
    name: str
    cell: int  # 1-based index among all cells
    header: str  # header text as written (joined continuations)
    body: str  # the cell source after the header
    body_line: int  # line in the cell where the body starts (header is line 1)
    inputs: list[Param]
    outputs: list[Param]
    options: TaskOptions
    source: str = ""  # the whole cell source

    def input(self, name: str) -> Param | None:
        return next((p for p in self.inputs if p.name == name), None)


@dataclass(frozen=True)
class SetupCell:
    cell: int
    source: str


@dataclass(frozen=True)
class WorkflowInput:
    name: str
    type: TypeRef
    has_default: bool
    default: Any
    consumers: tuple[str, ...]


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    task: str | None = None
    cell: int | None = None
    line: int | None = None
    name: str | None = None

    def format(self, path: str) -> str:
        where = path
        if self.cell is not None:
            where += f":cell {self.cell}"
        if self.line is not None:
            where += f":line {self.line}"
        return f"{where}: {self.severity}[{self.code}]: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "task": self.task,
            "cell": self.cell,
            "line": self.line,
            "name": self.name,
            "message": self.message,
        }


@dataclass
class Workflow:
    """A validated notebook: tasks in topological order plus every diagnostic."""

    path: str
    tasks: dict[str, Task] = field(default_factory=dict)
    setup: list[SetupCell] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # the papermill parameters cell
    parameters_source: str = ""
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    workflow_inputs: dict[str, WorkflowInput] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    kernel_name: str = "python3"
    # outputs declared by headers that did not become tasks (name -> cell): drawn from their red node
    broken_outputs: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def upstream(self, task: str) -> list[str]:
        return sorted({a for a, b, _ in self.edges if b == task})

    def producer_of(self, name: str) -> str | None:
        for task in self.tasks.values():
            if any(o.name == name for o in task.outputs):
                return task.name
        return None


def typeref_to_json(ref: TypeRef) -> dict[str, Any]:
    """Plain data for a TypeRef, to cross into a task's kernel."""
    out: dict[str, Any] = {"name": ref.name, "text": ref.text}
    if ref.args:
        out["args"] = [typeref_to_json(a) for a in ref.args]
    if ref.columns is not None:
        out["columns"] = sorted(ref.columns)
    if ref.defined_as:
        out["defined_as"] = ref.defined_as
    return out


def typeref_from_json(data: dict[str, Any]) -> TypeRef:
    return TypeRef(
        name=data["name"],
        args=tuple(typeref_from_json(a) for a in data.get("args", ())),
        text=data.get("text", ""),
        columns=frozenset(data["columns"]) if "columns" in data else None,
        defined_as=data.get("defined_as"),
    )
