"""The dashboard in real headless Chromium: how long until a big run's page, and a big runs list, are ready.

    python benchmarks/bench_dashboard.py [--tasks 1000] [--runs 10000]

Records (through the run store's own write API, as a driver would) one run of N tasks in chains of 10, every
task with an attempt and an output, plus M small runs; serves the dashboard on 127.0.0.1 and opens in Chromium
(/usr/bin/chromium, never downloaded):

- the run page of the N-task run, ready = its task table shows rows and the graph and timeline are drawn;
- the runs page, ready = the first page of M runs is listed.

The baseline is loading the same records from the store in this process (`get_run` + `get_graph`, and
`list_runs`). Targets: each page ready in under 2 s (median of --repeat loads in a warm browser).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CANVASES = """() => {
    let n = 0;
    const walk = (root) => root.querySelectorAll('*').forEach(el => {
        if (el.tagName === 'CANVAS' && el.width > 100 && el.height > 100) n += 1;
        if (el.shadowRoot) walk(el.shadowRoot);
    });
    walk(document);
    return n;
}"""


def record_big_run(store: Any, folder: Path, tasks: int) -> str:
    """A finished run of `tasks` tasks (chains of 10), recorded the way the driver records one."""
    from benchmarks.bench_validate import make_notebook
    from flyte_lab.graph.validate import graph_json, validate_notebook

    path = folder / "big.ipynb"
    make_notebook(path, tasks)
    wf = validate_notebook(str(path))
    run_id = store.create_run(str(path), {}, graph_json(wf), [{"name": n, "cell": wf.tasks[n].cell,
                                                               "resources": wf.tasks[n].options.resources()}
                                                              for n in wf.order], "local")
    store.set_run_status(run_id, "running")
    for name in wf.order:
        number = store.start_attempt(run_id, name, "tcp://127.0.0.1:1", {})
        out = wf.tasks[name].outputs[0]
        store.commit_success(run_id, name, number, {out.name: {"type": out.type.text, "uri": f"file:///{name}",
                                                               "preview": "[1.0, 1.0, 1.0]"}})
    store.set_run_status(run_id, "succeeded")
    return str(run_id)


def record_many_runs(store: Any, folder: Path, runs: int) -> None:
    graph = {"tasks": [{"name": "t", "cell": 1, "inputs": {}, "outputs": {}, "options": {}}], "edges": [],
             "workflow_inputs": {}, "diagnostics": []}
    path = folder / "small.ipynb"
    path.write_text("{}")
    for i in range(runs):
        store.create_run(str(path), {"i": i}, graph, [{"name": "t", "cell": 1}], "local", notebook_hash="0",
                         run_id=f"20260101-000000-{i:06x}")  # ids unique however fast they are made


def median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"bench_dashboard: skipped, no Chromium at {CHROMIUM} (apt-get install chromium)")
        return 0
    from panel.io.state import state
    from playwright.sync_api import sync_playwright

    from flyte_lab.dashboard.server import serve
    from flyte_lab.store import RunStore
    from flyte_lab.store.shared import close_shared_stores

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["FLYTE_LAB_HOME"] = str(folder / "home")
        os.environ.pop("FLYTE_LAB_DB_URL", None)
        store = RunStore.from_env()
        start = time.perf_counter()
        big = record_big_run(store, folder, args.tasks)
        record_many_runs(store, folder, args.runs)
        print(f"recorded a {args.tasks}-task run and {args.runs} runs in {time.perf_counter() - start:.1f}s")
        load_run = median(lambda: (store.get_run(big), store.get_graph(big)), args.repeat)
        load_list = median(lambda: store.list_runs(limit=10_000_000), args.repeat)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = serve("127.0.0.1", port, threaded=True)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)

                def run_page() -> None:
                    page.goto(f"http://127.0.0.1:{port}/run?id={big}")
                    page.locator('.tabulator-row:has-text("t0")').first.wait_for()  # the task table's first page
                    page.wait_for_function(f"({CANVASES})() >= 2")

                def runs_page() -> None:
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.locator(".flyte-count", has_text=f"{args.runs + 1} runs").wait_for()
                    page.locator(".tabulator-row").nth(24).wait_for()

                runs_page()  # warm: the browser caches Panel's and bokeh's JS
                shown_run = median(run_page, args.repeat)
                shown_list = median(runs_page, args.repeat)
                browser.close()
        finally:
            server.stop()
            server.join(timeout=30)
            with contextlib.suppress(RuntimeError):  # the stopped thread may still be listed as stopping
                state.reset()
            close_shared_stores()
            store.close()
    print(f"run page, {args.tasks} tasks: ready in {shown_run:.2f}s; loading its records from the store "
          f"{load_run:.3f}s ({shown_run / load_run:.1f}x); target < 2 s")
    print(f"runs page, {args.runs + 1} runs: ready in {shown_list:.2f}s; list_runs of all of them "
          f"{load_list:.3f}s ({shown_list / load_list:.1f}x); target < 2 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
