"""The peer benchmarks' workloads, as plain data every runner builds its own input from.

A workload is setup code plus tasks in a topological order. Each task has a
body that reads its inputs as variables and assigns its outputs; every value
is an `int` or a `list[int]`, so all five tools can carry it without codecs of
their own. A map-over task runs its body once per element of one list input
(declared with the element type, as flyte_lab's `--map-over` does); its
outputs reach later tasks as lists, in input order. The last task's `result`
output is checked against `expected` by every runner, so a broken peer is an
error, not a fast number.

Stdlib only: the runners in the peers' own venvs import this module too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Var:
    name: str
    type: str  # "int" or "list[int]"


@dataclass(frozen=True)
class Task:
    name: str
    inputs: tuple[Var, ...]
    outputs: tuple[Var, ...]
    body: str
    map_over: str | None = None  # the input whose list is mapped over (declared with the element type)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    setup: str
    tasks: tuple[Task, ...]
    result: str  # an output of the last task
    expected: int
    # Tools without a dynamic map (Ploomber, flytekit's NotebookTask) unroll a map-over into this many static tasks.
    map_length: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def executions(self) -> int:
        """Task bodies executed: each map-over element counts as one (the per-task overhead's divisor)."""
        return sum(self.map_length if t.map_over else 1 for t in self.tasks)

    def producer(self, name: str) -> Task:
        return next(t for t in self.tasks if any(o.name == name for o in t.outputs))

    def check(self, value: object) -> None:
        """Every runner's last word: the result is the expected one, or the run is an error."""
        if value != self.expected:
            raise AssertionError(f"{self.name}: {self.result} is {value!r}, expected {self.expected}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def workload_from_json(text: str) -> Workload:
    data: dict[str, Any] = json.loads(text)

    def var_list(items: list[dict[str, str]]) -> tuple[Var, ...]:
        return tuple(Var(**item) for item in items)

    tasks = tuple(
        Task(name=t["name"], inputs=var_list(t["inputs"]), outputs=var_list(t["outputs"]), body=t["body"],
             map_over=t["map_over"])
        for t in data.pop("tasks")
    )
    return Workload(tasks=tasks, **data)


INT = "int"
INT_LIST = "list[int]"


def _fan_out(name: str, title: str, setup: str, count: int, body: str, each: int, notes: dict[str, str] | None = None
             ) -> Workload:
    """`count` independent tasks `{name}_i() -> out_i: int` running `body` (with `{i}` filled in), then a join."""
    tasks = [
        Task(f"{name}_{i}", (), (Var(f"out_{i}", INT),), body.format(i=i))
        for i in range(count)
    ]
    join_inputs = tuple(Var(f"out_{i}", INT) for i in range(count))
    join_body = "total = " + " + ".join(f"out_{i}" for i in range(count))
    tasks.append(Task("join", join_inputs, (Var("total", INT),), join_body))
    return Workload(name, title, setup, tuple(tasks), "total", each * count + sum(range(count)), notes=notes or {})


CPU_LOOP = 2_000_000  # about 0.3 s of pure-Python adds on a quiet core (top-level code: global lookups)

def map_workload(n: int) -> Workload:
    """An `n`-element map-over of a trivial task between a producer and a reducer."""
    return Workload(
        f"map{n}", f"{n}-element map-over of a trivial task", "",
        (
            Task("make", (), (Var("xs", INT_LIST),), f"xs = list(range({n}))"),
            Task("square", (Var("xs", INT),), (Var("ys", INT),), "ys = xs * xs", map_over="xs"),
            Task("reduce", (Var("ys", INT_LIST),), (Var("total", INT),), "total = sum(ys)"),
        ),
        "total", sum(i * i for i in range(n)), map_length=n,
    )


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        _fan_out("fanout", "8 x 0.5 s sleep + join, 2 workers", "import time", 8,
                 "time.sleep(0.5)\nout_{i} = {i}", 0),
        # 39 + the join = 40 tasks, each next to nothing: pure per-task overhead
        _fan_out("trivial40", "40 trivial tasks (39 + join)", "", 39, "out_{i} = {i}", 0),
        map_workload(200),
        _fan_out("cpu", f"CPU-bound fan-out: 8 x a {CPU_LOOP:,}-step Python loop + join", "", 8,
                 f"acc = 0\nfor k in range({CPU_LOOP}):\n    acc += k\n"
                 f"out_{{i}} = acc - {CPU_LOOP * (CPU_LOOP - 1) // 2} + {{i}}",
                 0),
        # each fit recovers its slope exactly, so the join's total is known: 1 + 2 + ... + 8
        _fan_out("sklearn", "setup imports pandas + scikit-learn; 8 fits + join",
                 "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LinearRegression", 8,
                 "df = pd.DataFrame({{'x': np.arange(50.0)}})\ndf['y'] = ({i} + 1) * df['x'] + 3\n"
                 "fit = LinearRegression().fit(df[['x']], df['y'])\nout_{i} = int(round(fit.coef_[0]))",
                 1),
    ]
}
