"""A run launched from Jupyter (REST), cold and warm, against papermill running the same cells top to bottom.

    python benchmarks/bench_lab_launch.py [--repeat 5] [--kernelspec installed|shipped]

A real Jupyter server with the flyte_lab extension (`python -m jupyter_server`, with a root, FLYTE_LAB_HOME and
Jupyter folders of its own) gets `POST /flyte-lab/api/runs` for a notebook of two trivial tasks; each launch is
timed from the POST until `GET /flyte-lab/api/runs/ID` answers `succeeded` (polled every 20 ms). The first launch
is the server's first API request, so it is cold: the launch template starts with that request and the launch
waits for its imports (in Lab, the sidebar's first request starts it earlier). The next `--repeat` launches are
warm. Baselines, measured in the same run and interleaved with the warm launches: `python -m papermill` running
the equivalent plain notebook top to bottom as a whole process, and the same launch on a second server started
with `--FlyteLabApp.fork_runs=False` (each run a new interpreter, as before issue 16). All in the same
kernelspec: `installed` (the default) is made by `python -m ipykernel install --prefix` in the benchmark's
folder (bench_peers.py's `install_kernelspec`); `shipped` is ipykernel's wheel's `python3`. Every run's result
is checked. Prints the medians (and how long the POST itself took: until the run is recorded), the ratios
(target of issue 16 with the shared warm Dask executor: warm REST <= 0.25x papermill) and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_peers import Kernelspec, install_kernelspec
from bench_rerun import TWO, papermill_once
from peer_inputs import write_flyte, write_plain

TARGET = 0.25
READY = "flyte_lab: REST API ready at"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy


class Server:
    """One `jupyter server` with the flyte_lab extension, in folders of its own under `folder`."""

    def __init__(self, folder: Path, env: dict[str, str], notebook: Path, fork_runs: bool) -> None:
        root, self.home = folder / "root", folder / "home"
        root.mkdir(parents=True)
        (root / notebook.name).write_bytes(notebook.read_bytes())
        self.notebook = notebook.name
        self.token = secrets.token_hex(16)
        self.answers: list[float] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/flyte-lab/api/"
        env = dict(env, FLYTE_LAB_HOME=str(self.home), JUPYTER_CONFIG_DIR=str(folder / "config"),
                   JUPYTER_RUNTIME_DIR=str(folder / "runtime"))
        self.env = env
        self.log = folder / "server.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                 f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                 f"--ServerApp.root_dir={root}", "--ServerApp.jpserver_extensions={'flyte_lab': True}",
                 f"--FlyteLabApp.fork_runs={fork_runs}"],
                env=env, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while READY not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"the Jupyter server did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def call(self, route: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + route, method="GET" if body is None else "POST",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with DIRECT.open(request, timeout=300) as answer:
            return json.loads(answer.read())

    def launch(self) -> float:
        """Seconds from the POST until the run is `succeeded` (its result checked); the POST's own seconds (until
        the run is recorded) go to `self.answers`."""
        start = time.perf_counter()
        run_id = self.call("runs", {"path": self.notebook})["run_id"]
        self.answers.append(time.perf_counter() - start)
        while (run := self.call(f"runs/{run_id}"))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        if run["status"] != "succeeded":
            sys.exit(f"run {run_id} {run['status']}: {run.get('error')}")
        TWO.check(int(run["tasks"]["second"]["outputs"][TWO.result]["preview"]))
        return elapsed

    def stop(self) -> None:
        """The server, and the shared executor its runs started (kept between runs by design)."""
        subprocess.run([sys.executable, "-m", "flyte_lab.cli.main", "executor", "stop"], env=self.env,
                       capture_output=True, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kernelspec", choices=("installed", "shipped"), default="installed")
    parser.add_argument("--json", action="store_true", help="also print the times as one JSON line (bench_targets)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = install_kernelspec(folder / "jupyter") if args.kernelspec == "installed" else Kernelspec()
        env = dict(os.environ, TMPDIR=str(folder))
        for name in ("FLYTE_LAB_DB_URL", "FLYTE_LAB_ARTIFACTS"):  # private stores, in the folder
            env.pop(name, None)
        if spec.jupyter_path:
            env["JUPYTER_PATH"] = os.pathsep.join(p for p in (spec.jupyter_path, env.get("JUPYTER_PATH")) if p)
        write_flyte(TWO, folder / "flyte.ipynb", spec.name)
        write_plain(TWO, folder / "plain.ipynb", spec.name)
        forked = Server(folder / "forked", env, folder / "flyte.ipynb", fork_runs=True)
        spawned = Server(folder / "spawned", env, folder / "flyte.ipynb", fork_runs=False)
        try:
            cold = forked.launch()
            spawned_first = spawned.launch()
            papermill, warm, spawn = [], [], []
            for i in range(args.repeat):
                papermill.append(papermill_once(folder, env, i))
                warm.append(forked.launch())
                spawn.append(spawned.launch())
        finally:
            forked.stop()
            spawned.stop()
    pm, hot, old = statistics.median(papermill), statistics.median(warm), statistics.median(spawn)
    print(f"kernelspec: {args.kernelspec} ({spec.name}); repeats: {args.repeat}")
    print(f"papermill top to bottom (whole process):      {pm * 1000:8.0f} ms")
    print(f"REST launch, cold (the server's first request): {cold * 1000:6.0f} ms")
    print(f"REST launch, warm (forked):                     {hot * 1000:6.0f} ms   (each: "
          + ", ".join(f"{t * 1000:.0f}" for t in warm) + ")")
    print(f"REST launch, new interpreter (fork_runs off):   {old * 1000:6.0f} ms   (first: {spawned_first * 1000:.0f})")
    print(f"POST answered (run recorded), warm forked:      {statistics.median(forked.answers[1:]) * 1000:6.0f} ms   "
          f"new interpreter: {statistics.median(spawned.answers) * 1000:.0f} ms")
    print(f"ratio cold REST / papermill:                  {cold / pm:8.2f}x")
    print(f"ratio warm REST / papermill:                  {hot / pm:8.2f}x  (target <= {TARGET}x)")
    print(f"ratio warm REST / new-interpreter REST:       {hot / old:8.2f}x")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps({"papermill": papermill, "warm": warm, "cold": [cold], "spawned": spawn}))


if __name__ == "__main__":
    main()
