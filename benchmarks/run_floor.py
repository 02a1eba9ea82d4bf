"""The kernel-free floor: a workload's setup and bodies run by `exec` as Dask tasks, same cluster shape.

    python benchmarks/run_floor.py WORKLOAD.json [--workers 2]

One Dask task per task body (per element for a map-over, after the list is known, as an engine
that maps dynamically must), on a LocalCluster of worker processes with one thread each. Setup
is exec'd in every task (its imports are cached per worker process, as a warm kernel would).
Asserts the result, then prints one `PHASES {json}` line: cluster start and the map-over's span.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, wait

sys.path.insert(0, str(Path(__file__).parent))
from workloads import Task, Workload, workload_from_json  # the path first: run as a script, from any cwd

# an input's source: ("one", future of a task's outputs) | ("many", futures of map elements) | ("value", v)
Source = tuple[str, Any]


def run_body(setup: str, body: str, sources: dict[str, Source], outputs: list[str]) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for name, (kind, data) in sources.items():  # Dask has already replaced the futures by their results
        if kind == "one":
            namespace[name] = data[name]
        elif kind == "many":
            namespace[name] = [element[name] for element in data]
        else:
            namespace[name] = data
    exec(setup, namespace)
    exec(body, namespace)
    return {name: namespace[name] for name in outputs}


def run(client: Client, workload: Workload) -> tuple[int, float]:
    produced: dict[str, Source] = {}  # output name -> where its value comes from
    map_s = 0.0
    for task in workload.tasks:
        outputs = [o.name for o in task.outputs]
        sources = {v.name: produced[v.name] for v in task.inputs}
        if task.map_over is None:
            future = client.submit(run_body, workload.setup, task.body, sources, outputs, pure=False)
            produced.update({name: ("one", future) for name in outputs})
            continue
        map_s, elements = _map(client, workload, task, sources, outputs)
        produced.update({name: ("many", elements) for name in outputs})
    final: Future = produced[workload.result][1]
    return final.result()[workload.result], map_s


def _map(client: Client, workload: Workload, task: Task, sources: dict[str, Source], outputs: list[str]
         ) -> tuple[float, list[Future]]:
    start = time.perf_counter()
    kind, upstream = sources[task.map_over or ""]
    assert kind == "one", "the floor maps over a non-mapped task's output"
    values = upstream.result()[task.map_over]  # the list's length decides how many tasks: known only now
    elements = [
        client.submit(run_body, workload.setup, task.body, {**sources, task.map_over or "": ("value", v)}, outputs,
                      pure=False)
        for v in values
    ]
    wait(elements)  # only to time the map's span; the next task depends on all of them anyway
    return time.perf_counter() - start, elements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    workload = workload_from_json(args.workload.read_text())
    start = time.perf_counter()
    # Dask at its cheapest, as flyte_lab's local cluster runs it: no dashboard (bokeh), no profiler; loopback only
    # (dashboard_address=None would still serve the scheduler's HTTP on 8787, every interface)
    with dask.config.set({"distributed.worker.profile.enabled": False}), \
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}) as cluster, \
            Client(cluster) as client:
        cluster_s = time.perf_counter() - start
        result, map_s = run(client, workload)
    workload.check(result)
    print("PHASES " + json.dumps({"cluster_s": round(cluster_s, 4), "map_s": round(map_s, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
