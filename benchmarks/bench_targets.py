"""Issue 16's targets, each measured against its baseline in this run, with a kernelspec installed as users
install one (`python -m ipykernel install`; `--kernelspec shipped` for ipykernel's wheel's `python3`).

    python benchmarks/bench_targets.py [--repeat 5] [--kernelspec installed|shipped] [--skip rest,rerun]

- two trivial tasks, `flyte-lab run` (a whole process) on a warm executor and with none running, against
  `python -m papermill` running the same cells top to bottom (a whole process), interleaved;
- a later `%flyte_run` in the same kernel (bench_rerun.py) against papermill;
- the sidebar's Run (REST POST until `succeeded`) on a warm server and executor (bench_lab_launch.py);
- fan-out 8 x 0.5 s + join against the kernel-free Dask floor, the per-task overhead of 40 trivial tasks, and a
  2,000-element map-over's rate against a 200-element one's (bench_peers.py's runners, warm executor).

Every run's result is checked. Prints one line per target: the measure, the baseline, the ratio, the target,
and whether it is met; appends the numbers to benchmarks/results/targets.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_peers
from bench_peers import Kernelspec, install_kernelspec, prepare, run_once, stop_executors, warm_up
from workloads import WORKLOADS, map_workload

HERE = Path(__file__).parent


def two_task_runs(repeat: int, spec: Kernelspec, folder: Path) -> dict[str, list[float]]:
    """`flyte-lab run` warm and cold, and papermill, on two trivial tasks (bench_rerun's notebook)."""
    from bench_rerun import TWO

    plans = {tool: prepare(tool, TWO, folder / tool, {}, spec) for tool in ("flyte_lab", "flyte_lab_cold",
                                                                              "papermill")}
    warm_up(plans["flyte_lab"], 300)
    times: dict[str, list[float]] = {tool: [] for tool in plans}
    try:
        for i in range(repeat):
            for tool, plan in plans.items():
                times[tool].append(run_once(plan, i, 300)[0])
    finally:
        stop_executors(plans["flyte_lab"], plans["flyte_lab"].env)
    return times


def workload_runs(repeat: int, spec: Kernelspec, folder: Path) -> dict[str, dict[str, list[float]]]:
    """Warm flyte_lab and the floor on fanout, trivial40, map200 and map2000: wall times and map spans."""
    workloads = [WORKLOADS["fanout"], WORKLOADS["trivial40"], map_workload(200), map_workload(2000)]
    out: dict[str, dict[str, list[float]]] = {}
    for w in workloads:
        plans = {tool: prepare(tool, w, folder / w.name / tool, {}, spec) for tool in ("flyte_lab", "floor")}
        warm_up(plans["flyte_lab"], 900)
        walls: dict[str, list[float]] = {"flyte_lab": [], "floor": [], "map_s": []}
        try:
            for i in range(repeat if w.map_length < 1000 else max(1, repeat // 2)):
                for tool, plan in plans.items():
                    wall, span = run_once(plan, i, 900)
                    walls[tool].append(wall)
                    if tool == "flyte_lab" and span:
                        walls["map_s"].append(span)
        finally:
            stop_executors(plans["flyte_lab"], plans["flyte_lab"].env)
        out[w.name] = walls
    return out


def rest_runs(repeat: int, kernelspec: str) -> dict[str, list[float]]:
    """The sidebar's Run, warm, and papermill (bench_lab_launch.py, as JSON)."""
    proc = subprocess.run([sys.executable, str(HERE / "bench_lab_launch.py"), "--repeat", str(repeat),
                           "--kernelspec", kernelspec, "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_lab_launch.py failed: {proc.stderr[-800:]}")
    data: dict[str, list[float]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kernelspec", choices=("installed", "shipped"), default="installed")
    parser.add_argument("--skip", default="", help="comma-separated: rerun, rest, workloads")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    med = statistics.median
    lines: list[tuple[str, float, float, str, bool]] = []  # (what, measure, baseline, target text, met)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_targets_") as tmp:
        folder = Path(tmp)
        spec = install_kernelspec(folder / "jupyter") if args.kernelspec == "installed" else Kernelspec()
        two = two_task_runs(args.repeat, spec, folder / "two")
        pm = med(two["papermill"])
        warm, cold = med(two["flyte_lab"]), med(two["flyte_lab_cold"])
        lines.append(("`flyte-lab run`, warm executor / papermill", warm, pm, "<= 0.5x", warm / pm <= 0.5))
        lines.append(("`flyte-lab run`, no executor running / papermill", cold, pm, "<= 1.2x", cold / pm <= 1.2))
        if "rerun" not in skip:
            from bench_rerun import measure

            papermill, _first, again = measure(args.repeat, args.kernelspec)
            rerun, base = med(again), med(papermill)
            lines.append(("second `%flyte_run` in a kernel / papermill", rerun, base, "<= 0.15x", rerun / base <= 0.15))
        if "rest" not in skip:
            rest = rest_runs(args.repeat, args.kernelspec)
            post, base = med(rest["warm"]), med(rest["papermill"])
            lines.append(("sidebar Run (REST POST until succeeded), warm / papermill", post, base, "<= 0.25x",
                          post / base <= 0.25))
        if "workloads" not in skip:
            runs = workload_runs(args.repeat, spec, folder / "workloads")
            fan, floor = med(runs["fanout"]["flyte_lab"]), med(runs["fanout"]["floor"])
            lines.append(("fan-out 8 x 0.5 s + join / Dask floor", fan, floor, "<= 1.2x", fan / floor <= 1.2))
            t40, f40 = med(runs["trivial40"]["flyte_lab"]), med(runs["trivial40"]["floor"])
            per_task = (t40 - f40) / 40
            lines.append(("40 trivial tasks: overhead per task (s) / 40 ms", per_task, 0.040, "<= 1.0x",
                          per_task <= 0.040))
            rate200 = 200 / med(runs["map200"]["map_s"])
            rate2000 = 2000 / med(runs["map2000"]["map_s"])
            lines.append(("2,000-element map-over: elements/s / 40", rate2000, 40.0, ">= 1.0x", rate2000 >= 40))
            lines.append(("map-over rate, 2,000 / 200 elements", rate2000, rate200, ">= 0.8x",
                          rate2000 >= 0.8 * rate200))
    print(f"\nkernelspec: {args.kernelspec}; repeats: {args.repeat}; "
          f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| target | measured | baseline | ratio | target | met |\n| --- | ---: | ---: | ---: | --- | --- |")
    for what, value, base, target, met in lines:
        print(f"| {what} | {value:.3f} | {base:.3f} | {value / base:.2f}x | {target} | {'yes' if met else 'NO'} |")
    record = {"bench": "targets", "time": datetime.now(UTC).isoformat(timespec="seconds"),
              "kernelspec": args.kernelspec, "repeat": args.repeat, "load_avg_1m": round(os.getloadavg()[0], 2),
              "total_s": round(time.perf_counter() - started, 1),
              "targets": [{"what": w, "measured": v, "baseline": b, "target": t, "met": m}
                          for w, v, b, t, m in lines]}
    results = bench_peers.RESULTS
    results.mkdir(parents=True, exist_ok=True)
    with (results / "targets.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
