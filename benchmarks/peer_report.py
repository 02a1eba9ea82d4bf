"""The peer benchmark's table and plot, from the medians bench_peers.py measured.

Columns: wall = median whole-process seconds; x floor = wall / the floor's wall on the same workload;
overhead/task = (wall - floor) / task bodies run (map-over elements count one each), in ms. A cell
whose tool failed (install, run, or a wrong result) carries the reason instead of numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workloads import Workload

LABELS = {
    "flyte_lab": "flyte_lab, warm executor",
    "flyte_lab_cold": "flyte_lab, no executor running",
    "papermill": "papermill, top to bottom",
    "floor": "Dask exec floor",
    "ploomber": "Ploomber, Parallel",
    "flytekit": "flytekit local, NotebookTask",
}
# measured: (median wall s or None, error, map-over spans in s)
Measured = tuple[float | None, str, list[float]]


@dataclass(frozen=True)
class Row:
    workload: str
    title: str
    tool: str
    tasks: int
    wall_s: float | None
    ratio: float | None
    overhead_ms: float | None
    map_rate: float | None  # map-over elements per second of the map's span (flyte_lab and the floor report it)
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def rows(workloads: list[Workload], tools: list[str], measured: Mapping[tuple[str, str], Measured]) -> list[Row]:
    out = []
    for w in workloads:
        floor = measured[(w.name, "floor")][0]
        for tool in tools:
            wall, error, spans = measured[(w.name, tool)]
            ratio = wall / floor if wall is not None and floor else None
            overhead = (wall - floor) / w.executions * 1000 if wall is not None and floor is not None else None
            rate = w.map_length / statistics.median(spans) if spans and w.map_length and not error else None
            out.append(Row(w.name, w.title, tool, w.executions, wall, ratio, overhead, rate, error))
    return out


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(table: list[Row], repeat: int) -> str:
    lines = [
        f"Whole processes, median of {repeat}; floor = the same code `exec`'d as Dask tasks, 2 worker processes.",
        "",
        "| workload | tool | wall (s) | x floor | overhead / task (ms) | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in table:
        note = r.error.replace("|", "\\|") if r.error else (f"map: {r.map_rate:.1f} elements/s" if r.map_rate else "")
        overhead = "" if r.tool == "floor" else _num(r.overhead_ms, ".0f")
        lines.append(f"| {r.title} ({r.tasks} tasks) | {LABELS[r.tool]} | {_num(r.wall_s, '.2f')} | "
                     f"{_num(r.ratio, '.2f')} | {overhead} | {note} |")
    return "\n".join(lines) + "\n"


def pivot(table: list[Row]) -> str:
    """Workload x tool at a glance: `wall s · x floor · ms/task`, or `failed` (the long table says why)."""
    tools = list(dict.fromkeys(r.tool for r in table))
    lines = ["| workload | " + " | ".join(LABELS[t] for t in tools) + " |", "| --- |" + " ---: |" * len(tools)]
    for name in dict.fromkeys(r.workload for r in table):
        cells = []
        for tool in tools:
            r = next(r for r in table if r.workload == name and r.tool == tool)
            if r.wall_s is None:
                cells.append("failed")
            elif tool == "floor" or r.ratio is None or r.overhead_ms is None:
                cells.append(f"{r.wall_s:.1f} s")
            else:
                cells.append(f"{r.wall_s:.1f} s · {r.ratio:.1f}x · {r.overhead_ms:.0f} ms")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: list[Row], path: Path) -> str:
    """Grouped bars of wall time per workload, one colour per tool; a failed cell gets an x. '' when drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write the file only
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return "peers.png not drawn: matplotlib is not installed (pip install -e '.[bench]')"
    workloads = list(dict.fromkeys(r.workload for r in table))
    tools = list(dict.fromkeys(r.tool for r in table))
    width = 0.8 / len(tools)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, tool in enumerate(tools):
        for j, name in enumerate(workloads):
            row = next(r for r in table if r.workload == name and r.tool == tool)
            x = j + (i - (len(tools) - 1) / 2) * width
            if row.wall_s is None:  # at the foot of the axis, whatever the scale
                ax.annotate("x", (x, 0.02), xycoords=("data", "axes fraction"), ha="center", color="black")
                continue
            ax.bar(x, row.wall_s, width, color=f"C{i}", label=LABELS[tool] if j == 0 else None)
            if row.ratio is not None and tool != "floor":
                ax.annotate(f"{row.ratio:.1f}x", (x, row.wall_s), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())  # 30, not 3 x 10^1
    ax.set_ylabel("wall time, whole process (s, log)")
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_title("flyte_lab and peers on the same notebooks (labels: ratio to the Dask exec floor; x: failed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ""
