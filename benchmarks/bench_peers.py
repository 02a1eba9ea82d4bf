"""flyte_lab against its peers, side by side on the same workloads, timed as whole processes.

    python benchmarks/bench_peers.py [--repeat 3] [--workloads fanout,...] [--tools flyte_lab,...]
                                     [--kernelspec installed|shipped]

Tools (each run is one process: interpreter start, cluster or kernel start and teardown included):

- flyte_lab: `python -m flyte_lab.cli.main run NOTEBOOK --workers 2 --json` on a warm shared executor (one
  FLYTE_LAB_HOME per workload, its executor started by an untimed run first, as after a user's first run);
- flyte_lab_cold: the same with no executor running (a fresh FLYTE_LAB_HOME per run; its executor is stopped,
  untimed, after each run);
- papermill: the same cells top to bottom in one notebook (`python -m papermill`), one kernel;
- floor:     the same setup and bodies run by `exec` as Dask tasks on a 2-worker LocalCluster (run_floor.py);
- ploomber:  NotebookRunner tasks on the Parallel executor, 2 processes (run_ploomber.py, its own venv);
- flytekit:  NotebookTasks in a workflow, local execution (run_flytekit.py, its own venv).

flyte_lab and papermill run their notebooks with `--kernelspec installed` (the default) in a kernelspec made
by `python -m ipykernel install --prefix` (how users get one: `-Xfrozen_modules=off` on Python 3.11+), with
`shipped` in ipykernel's wheel's `python3` (`python`, no options); the peers in their own venvs use theirs.

Workloads are in workloads.py. Every run checks the workload's result, so a broken tool is an error in
its cell, not a fast number; a peer whose venv cannot be built says so in its cells. Medians of --repeat
runs, the tools and workloads interleaved so that background load hits all alike. Prints a markdown table
(wall time, ratio to the floor, per-task overhead = (wall - floor) / task bodies run) and writes it to
benchmarks/results/peers.md, appends a JSON line to peers.jsonl and draws peers.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peer_envs
import peer_inputs
import peer_report
from workloads import WORKLOADS, Workload

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TOOLS = ("flyte_lab", "flyte_lab_cold", "papermill", "floor", "ploomber", "flytekit")
FLYTE = ("flyte_lab", "flyte_lab_cold")
PEERS = ("ploomber", "flytekit")  # the tools that live in venvs of their own


class RunFailed(Exception):
    """One run of one tool on one workload did not finish or did not compute the expected result."""


@dataclass
class Cell:
    """The measurements of one tool on one workload."""

    times: list[float] = field(default_factory=list)
    error: str = ""
    map_s: list[float] = field(default_factory=list)  # the map-over's span, where the tool reports it

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.error else None


@dataclass(frozen=True)
class Plan:
    """How to run one tool on one workload: the command per repeat, its environment, its folder."""

    tool: str
    workload: Workload
    folder: Path
    python: Path
    env: dict[str, str]

    def command(self, repeat: int) -> list[str]:
        py, folder = str(self.python), str(self.folder)
        if self.tool in FLYTE:
            return [py, "-m", "flyte_lab.cli.main", "run", "flyte.ipynb", "--workers", "2", "--json"]
        if self.tool == "papermill":
            return [py, "-m", "papermill", "plain.ipynb", f"plain-out-{repeat}.ipynb", "--no-progress-bar"]
        if self.tool == "floor":
            return [py, str(HERE / "run_floor.py"), "workload.json", "--workers", "2"]
        if self.tool == "ploomber":
            return [py, str(HERE / "run_ploomber.py"), folder, "--workers", "2"]
        return [py, str(HERE / "run_flytekit.py"), folder]


def _tail(text: str, count: int = 4) -> str:
    # rich tracebacks end in box-drawing rules and dashes: keep the lines with words in them
    lines = [ln.strip() for ln in text.splitlines() if any(ch.isalnum() for ch in ln)]
    return " / ".join(lines[-count:])[-400:]


@dataclass(frozen=True)
class Kernelspec:
    """The kernelspec flyte_lab and papermill run in: its name and the Jupyter data folder that holds it."""

    name: str = "python3"
    jupyter_path: str | None = None


def install_kernelspec(prefix: Path) -> Kernelspec:
    """A kernelspec as users get one (`python -m ipykernel install`), into a folder of this benchmark's own."""
    name = "bench-installed"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", name],
                   check=True, capture_output=True)
    return Kernelspec(name, str(prefix / "share" / "jupyter"))


def prepare(tool: str, workload: Workload, folder: Path, peer_pythons: dict[str, peer_envs.PeerEnv],
            kernelspec: Kernelspec = Kernelspec()) -> Plan:
    """Write the tool's input (untimed) and say how to run it."""
    folder.mkdir(parents=True)
    (folder / "workload.json").write_text(workload.to_json())
    env = dict(os.environ, TMPDIR=str(folder))  # what a tool leaves in /tmp goes away with the folder
    python = Path(sys.executable)
    if tool in (*FLYTE, "papermill") and kernelspec.jupyter_path:
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (kernelspec.jupyter_path, env.get("JUPYTER_PATH")) if p)
    if tool in FLYTE:
        peer_inputs.write_flyte(workload, folder / "flyte.ipynb", kernelspec.name)
        for name in ("FLYTE_LAB_DB_URL", "FLYTE_LAB_ARTIFACTS"):  # a private store, below
            env.pop(name, None)
        env["FLYTE_LAB_HOME"] = str(folder / "home")
    elif tool == "papermill":
        peer_inputs.write_plain(workload, folder / "plain.ipynb", kernelspec.name)
    elif tool in PEERS:
        python = peer_pythons[tool].python or python
        (peer_inputs.write_ploomber if tool == "ploomber" else peer_inputs.write_flytekit)(workload, folder)
        for name in ("PYTHONPATH", "VIRTUAL_ENV"):  # the peer sees its own venv only
            env.pop(name, None)
        # no telemetry, no version check over the network in the timed process
        env.update(PLOOMBER_STATS_ENABLED="false", PLOOMBER_VERSION_CHECK_DISABLED="true")
    return Plan(tool, workload, folder, python, env)


def run_once(plan: Plan, repeat: int, timeout_s: float) -> tuple[float, float | None]:
    """Wall seconds of one whole-process run, and the map-over's span where the tool reports it."""
    env = plan.env
    if plan.tool == "flyte_lab_cold":
        env = dict(env, FLYTE_LAB_HOME=str(plan.folder / f"home-{repeat}"))  # no executor, no store yet
    start = time.perf_counter()
    try:
        proc = _run_group(plan.command(repeat), plan.folder, env, timeout_s)
        elapsed = time.perf_counter() - start  # the stop below is not the run's: untimed
    finally:
        if plan.tool == "flyte_lab_cold":
            stop_executors(plan, env)
    if proc.returncode != 0:
        # the whole output, for whoever looks into it (the folder itself goes away with the run)
        log = plan.folder.parent.parent / f"failed-{plan.workload.name}-{plan.tool}-{repeat + 1}.log"
        log.write_text(f"$ {' '.join(plan.command(repeat))}\n\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        raise RunFailed(f"exit {proc.returncode} (whole output: {log.name}): {_tail(proc.stderr or proc.stdout)}")
    if plan.tool in FLYTE:
        return elapsed, _check_flyte(plan, env, proc.stdout)
    if plan.tool == "floor":
        phases = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PHASES ")), None)
        return elapsed, json.loads(phases.removeprefix("PHASES "))["map_s"] if phases else None
    return elapsed, None


def warm_up(plan: Plan, timeout_s: float) -> None:
    """Untimed: the run that starts the workload's executor (and its kernel templates), as a user's first."""
    proc = _run_group(plan.command(-1), plan.folder, plan.env, timeout_s)
    if proc.returncode != 0:
        raise RunFailed(f"warm-up run: exit {proc.returncode}: {_tail(proc.stderr or proc.stdout)}")
    # then the pause a user takes: the executor starts its warm driver template once its first run is over
    # (~3 s of imports), and a `flyte-lab run` started before that drives itself, as a cold one does
    home = plan.env.get("FLYTE_LAB_HOME")
    if home and plan.tool == "flyte_lab":
        deadline = time.monotonic() + 60
        while not list(Path(home).glob("executors/*/driver.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)


def stop_executors(plan: Plan, env: dict[str, str]) -> None:
    subprocess.run([str(plan.python), "-m", "flyte_lab.cli.main", "executor", "stop"], cwd=plan.folder, env=env,
                   capture_output=True, check=False)


def _run_group(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a session of its own, so that a timeout kills its workers and kernels too, not only it."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout_s)
        except BaseException as exc:  # a timeout, or Ctrl-C (which the child's own session does not get)
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise RunFailed(f"timed out after {timeout_s:.0f} s") from None
            raise
    return subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)


def _check_flyte(plan: Plan, env: dict[str, str], stdout: str) -> float | None:
    """Untimed: the run computed the expected result (read back through the CLI); the map-over's span."""
    record: dict[str, Any] = json.loads(stdout)
    if record["status"] != "succeeded":
        raise RunFailed(f"run {record['run_id']} {record['status']}")
    outputs = subprocess.run([str(plan.python), "-m", "flyte_lab.cli.main", "outputs", record["run_id"], "--json"],
                             cwd=plan.folder, env=env, capture_output=True, text=True, check=False)
    if outputs.returncode != 0:
        raise RunFailed(f"outputs --json exit {outputs.returncode}: {_tail(outputs.stderr)}")
    last = plan.workload.tasks[-1].name
    value = json.loads(outputs.stdout).get(last, {}).get(plan.workload.result)
    if value != plan.workload.expected:
        raise RunFailed(f"{last}.{plan.workload.result} is {value!r}, expected {plan.workload.expected}")
    mapped = [t.name for t in plan.workload.tasks if t.map_over]
    return record["tasks"][mapped[0]].get("duration_s") if mapped else None


def measure(args: argparse.Namespace, workloads: list[Workload], tools: list[str], plans: dict[tuple[str, str], Plan],
            cells: dict[tuple[str, str], Cell]) -> None:
    """Every repeat of every tool, one workload after another, the tools interleaved (drift in machine load hits
    every tool alike). flyte_lab's warm executor for a workload is started before its repeats and stopped after
    them: an idle executor left up would load the machine under the next workloads' runs, every tool's."""
    for w in workloads:
        flyte = plans.get((w.name, "flyte_lab"))
        if flyte is not None:
            try:
                warm_up(flyte, args.timeout)
            except RunFailed as exc:
                cells[(w.name, "flyte_lab")].error = str(exc)
        try:
            for repeat in range(args.repeat):
                for tool in tools:
                    _measure_one(args, w, tool, repeat, plans, cells)
        finally:
            if flyte is not None:
                stop_executors(flyte, flyte.env)


def _measure_one(args: argparse.Namespace, w: Workload, tool: str, repeat: int, plans: dict[tuple[str, str], Plan],
                 cells: dict[tuple[str, str], Cell]) -> None:
    cell = cells[(w.name, tool)]
    if cell.error:  # a tool that failed once is not retried: its cell says why
        return
    try:
        elapsed, map_s = run_once(plans[(w.name, tool)], repeat, args.timeout)
    except RunFailed as exc:
        cell.error = str(exc)
        print(f"  repeat {repeat + 1}/{args.repeat} {w.name:9s} {tool:9s} FAILED: {exc}", flush=True)
        return
    cell.times.append(elapsed)
    if map_s is not None:
        cell.map_s.append(map_s)
    print(f"  repeat {repeat + 1}/{args.repeat} {w.name:9s} {tool:9s} {elapsed:7.2f} s", flush=True)



def _split(value: str, allowed: tuple[str, ...], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown or not names:
        parser.error(f"--{what} takes a comma-separated subset of {','.join(allowed)} (got {value!r})")
    return [n for n in allowed if n in names]  # the canonical order, whatever order was asked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--tools", default=",".join(TOOLS), help="the floor is always run: ratios need it")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take before it counts failed")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where peers.md, .jsonl and .png go")
    parser.add_argument("--kernelspec", choices=("installed", "shipped"), default="installed",
                        help="flyte_lab's and papermill's kernelspec: installed by `python -m ipykernel install` "
                             "(as users get it), or the `python3` ipykernel's wheel ships")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    workloads = [WORKLOADS[n] for n in _split(args.workloads, tuple(WORKLOADS), "workloads", parser)]
    tools = _split(args.tools + ",floor", TOOLS, "tools", parser)

    started = time.perf_counter()
    envs = {p: peer_envs.ensure(p, args.results / f"venv-{p}.log") for p in PEERS if p in tools}
    cells = {(w.name, t): Cell(error=envs[t].error if t in envs else "") for w in workloads for t in tools}
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        kernelspec = install_kernelspec(Path(tmp) / "jupyter") if args.kernelspec == "installed" else Kernelspec()
        plans = {(w.name, t): prepare(t, w, Path(tmp) / w.name / t, envs, kernelspec)
                 for w in workloads for t in tools}
        measure(args, workloads, tools, plans, cells)
        args.results.mkdir(parents=True, exist_ok=True)
        for log in Path(tmp).glob("failed-*.log"):
            shutil.copy(log, args.results / log.name)

    rows = peer_report.rows(workloads, tools, {k: (c.median, c.error, c.map_s) for k, c in cells.items()})
    table = (f"flyte_lab and papermill kernelspec: {args.kernelspec}\n\n" + peer_report.pivot(rows) + "\n"
             + peer_report.markdown(rows, args.repeat))
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "peers.md").write_text(table)
    plot_note = peer_report.plot(rows, args.results / "peers.png")
    if plot_note:
        print(plot_note)
    record = {
        "bench": "peers",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "repeat": args.repeat,
        "kernelspec": args.kernelspec,
        "total_s": round(time.perf_counter() - started, 1),
        "cells": [
            {"workload": w, "tool": t, "times_s": [round(x, 4) for x in c.times], "error": c.error,
             "map_s": [round(x, 4) for x in c.map_s]}
            for (w, t), c in cells.items()
        ],
        "rows": [r.as_dict() for r in rows],
    }
    with (args.results / "peers.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"wrote {args.results / 'peers.md'}, peers.jsonl, peers.png in {record['total_s']} s")
    # a peer's failure is a finding (its cells say why); our own tool or a baseline failing is a broken benchmark
    return 1 if any(c.error and t not in PEERS for (_, t), c in cells.items()) else 0


if __name__ == "__main__":
    sys.exit(main())
