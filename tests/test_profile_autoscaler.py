"""Per-profile scaling on a real local `SpecCluster` whose worker groups are worker processes (Nannies):
a task asking for the GPU profile makes a GPU-profile worker appear, runs on it, and the worker goes away
when idle; the default group is never touched; demand above a group's maximum is capped. Every decision is
recorded in a real run store and listed by `flyte-lab show`.

The same controller drives dask-kubernetes worker groups (`KubeGroups`), which cannot run here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyte_lab.cli.main import main
from flyte_lab.k8s.autoscaler import (
    Bounds,
    LocalGroups,
    ProfileAutoscaler,
    ScaleState,
    plan_replicas,
    store_recorder,
)
from flyte_lab.store import RunStore

DEFAULT, GPU = "flyte-profile-default0", "flyte-profile-gpu00001"


@given(demand=st.dictionaries(st.sampled_from([DEFAULT, GPU]), st.integers(0, 9)),
       current=st.dictionaries(st.sampled_from([DEFAULT, GPU]), st.integers(0, 9)),
       low=st.integers(0, 3), mins=st.integers(0, 2), extra=st.integers(0, 3))
def test_plans_stay_within_bounds_and_scale_down_only_after_a_while(
        demand: dict[str, int], current: dict[str, int], low: int, mins: int, extra: int) -> None:
    bounds = {DEFAULT: Bounds(mins, mins + extra), GPU: Bounds(0, 1)}
    state = ScaleState(low_for=dict.fromkeys(bounds, low))
    plan = plan_replicas(demand, current, bounds, state, down_after=3)
    for tag, n in plan.items():
        assert bounds[tag].minimum <= n <= bounds[tag].maximum
        if n < current.get(tag, 0):
            assert low + 1 >= 3  # only after three low steps in a row
        assert n != current.get(tag, 0)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def spec_cluster() -> Iterator[Any]:
    from distributed import Scheduler, SpecCluster

    cluster = SpecCluster(scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1",
                                                                   "dashboard_address": "127.0.0.1:0"}},
                          workers={}, silence_logs=40)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_a_gpu_task_makes_its_worker_appear_and_go_away(spec_cluster: Any, home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import Client, Nanny

    def template(tag: str, extra: dict[str, float]) -> dict[str, Any]:
        return {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "dashboard_address": None,
                                          "resources": {tag: 1, **extra}}}

    backend = LocalGroups(spec_cluster, {DEFAULT: template(DEFAULT, {}), GPU: template(GPU, {"GPU": 1})})
    store = RunStore.from_env()
    run_id = store.create_run("gpu.ipynb", {}, {"tasks": {}}, [{"name": "train", "cell": 3, "resources": {}}],
                              "k8s")
    fence = store.claim_run(run_id, "test-driver", 60)
    with Client(spec_cluster) as client:
        scaler = ProfileAutoscaler(client, backend, {DEFAULT: Bounds(0, 2), GPU: Bounds(0, 1)}, down_after=2,
                                   labels={DEFAULT: "default-aaaaaa", GPU: "gpu1-mem8gi-bbbbbb"},
                                   on_scale=store_recorder(store, run_id, fence))
        assert scaler.step() == {} and backend.replicas() == {DEFAULT: 0, GPU: 0}

        future = client.submit(lambda: "trained", resources={GPU: 1, "GPU": 1}, key="train-1")
        _wait(lambda: scaler.demand() == {GPU: 1}, 10, "the scheduler to see the GPU task")
        assert scaler.step() == {GPU: 1}
        assert future.result(timeout=60) == "trained"
        ran_on = client.who_has(future)["train-1"]
        workers = client.scheduler_info()["workers"]
        assert [workers[address]["resources"] for address in ran_on] == [{GPU: 1, "GPU": 1}]
        del future

        _wait(lambda: scaler.demand() == {}, 10, "the GPU task to be released")
        assert scaler.step() == {}  # one idle step: not yet
        assert scaler.step() == {GPU: 0}  # idle for two steps: the GPU worker goes away
        _wait(lambda: not client.scheduler_info()["workers"], 30, "the GPU worker to leave")

        # both decisions are in the run store, and `show` lists them
        assert main(["show", run_id, "--json"]) == 0
        events = json.loads(capsys.readouterr().out)["scale_events"]
        assert [(e["group"], e["profile"], e["from"], e["to"], e["reason"], e["waiting"]) for e in events] == [
            ("gpu1-mem8gi-bbbbbb", GPU, 0, 1, "waiting_tasks", 1),
            ("gpu1-mem8gi-bbbbbb", GPU, 1, 0, "idle_timeout", 0)]
        assert events[0]["at"] <= events[1]["at"]
        assert main(["show", run_id]) == 0
        text = capsys.readouterr().out
        assert "worker groups scaled" in text
        lines = [line for line in text.splitlines() if "gpu1-mem8gi-bbbbbb" in line]
        assert len(lines) == 2 and "0 -> 1" in lines[0] and "tasks waiting (1)" in lines[0], text
        assert "1 -> 0" in lines[1] and "idle timeout" in lines[1], text

        # demand above the maximum is capped; the GPU group is not touched by default-profile demand
        futures = [client.submit(time.sleep, 0.5, resources={DEFAULT: 1}, pure=False) for _ in range(5)]
        _wait(lambda: scaler.demand().get(DEFAULT) == 5, 10, "five default tasks")
        assert scaler.step() == {DEFAULT: 2}
        client.gather(futures)
        assert backend.replicas() == {DEFAULT: 2, GPU: 0}
    assert [e["to"] for e in store.scale_events(run_id)] == [1, 0, 2]
    store.close()

