"""The driver: feeds Dask outcomes to the state machine and writes each change to the store first.

It is the only writer of run state. Monitoring (CLI progress, widget,
dashboard) reads the store or subscribes to `on_change`; nothing else is
special-cased here.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flyte_lab.engine import state_machine as sm
from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.engine.cache_keys import cache_key
from flyte_lab.engine.clusters import dask_resources, unplaceable
from flyte_lab.engine.task_notebook import build_task_notebook
from flyte_lab.engine.worker import EVENT_TOPIC, run_task_attempt
from flyte_lab.graph.model import Workflow, typeref_to_json
from flyte_lab.graph.type_rules import as_list
from flyte_lab.store import RunStore

CACHE_LOCK_TTL_S = 6 * 3600.0


@dataclass
class _Attempt:
    task: str
    attempt: int  # the state machine's number
    number: int  # the store's row number
    futures: list[Any]
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    size: int | None = None  # map-over fan-out


class RunDriver:
    def __init__(self, *, store: RunStore, artifacts: ArtifactStore, wf: Workflow, run_id: str, client: Any,
                 home: Path, input_refs: dict[tuple[str, str], dict[str, Any]], secrets: dict[str, dict[str, str]],
                 use_cache: bool = True, prior: dict[str, str] | None = None,
                 prior_attempts: dict[str, int] | None = None,
                 prior_outputs: dict[str, dict[str, Any]] | None = None,
                 on_change: Callable[[dict[str, str]], None] | None = None) -> None:
        self.store, self.artifacts, self.wf, self.run_id, self.client = store, artifacts, wf, run_id, client
        self.home = home
        self.input_refs = input_refs  # (task, input) -> artifact entry, for workflow inputs
        self.secrets = secrets  # task -> env for its kernel; never stored
        self.use_cache = use_cache
        self.outputs: dict[str, dict[str, Any]] = dict(prior_outputs or {})
        self.on_change = on_change
        plans = [sm.TaskPlan(name=name, upstream=tuple(wf.upstream(name)), retries=wf.tasks[name].options.retries,
                             cache=wf.tasks[name].options.cache and use_cache) for name in wf.order]
        self.machine = sm.RunStateMachine(plans, prior=prior, prior_attempts=prior_attempts)
        self.inflight: dict[str, _Attempt] = {}  # dask key -> attempt
        self.by_task: dict[str, _Attempt] = {}
        self.cache_waiting: dict[str, str] = {}  # task -> cache key held by another run
        self.cache_keys: dict[str, str] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.starts: dict[str, int] = {}
        self.started_at: dict[str, datetime] = {}  # task -> when its worker began it (worker clock)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> str:
        from distributed import wait

        self.client.subscribe_topic(EVENT_TOPIC, lambda event: self.events.put(event[1]))
        self.store.set_run_status(self.run_id, "running")
        try:
            self._apply(self.machine.handle(sm.RunStarted()))
            while not self.machine.done:
                pending = [f for a in self.by_task.values() for f in a.futures if not f.done()]
                if pending:
                    try:
                        wait(pending, timeout=0.25, return_when="FIRST_COMPLETED")
                    except TimeoutError:
                        pass
                else:
                    time.sleep(0.05)
                self._drain_events()
                self._collect()
                self._poll_cache_waiters()
        except KeyboardInterrupt:
            self._apply(self.machine.handle(sm.RunCancelled()))
            for attempt in self.by_task.values():
                self.client.cancel(attempt.futures)
            raise
        finally:
            self.client.unsubscribe_topic(EVENT_TOPIC)
        return self.machine.run_status

    def _changed(self) -> None:
        if self.on_change:
            self.on_change(self.machine.task_status)

    def _apply(self, instructions: list[Any]) -> None:
        work = list(instructions)
        while work:
            ins = work.pop(0)
            if isinstance(ins, sm.MarkTask):
                attempt = self.by_task.get(ins.task)
                notebook = None
                if attempt and attempt.results:
                    notebook = next(iter(attempt.results.values())).get("output_notebook")
                at = self.started_at.pop(ins.task, None) if ins.status == "running" else None
                self.store.set_task_status(self.run_id, ins.task, ins.status, error=ins.error,
                                           output_notebook=notebook, cache_key=self.cache_keys.get(ins.task), at=at)
                self._changed()
            elif isinstance(ins, sm.FinishRun):
                self.store.set_run_status(self.run_id, ins.status)
            elif isinstance(ins, sm.CheckCache):
                work.extend(self._check_cache(ins.task))
            elif isinstance(ins, sm.Submit):
                work.extend(self._submit(ins.task, ins.attempt))

    # -- cache ------------------------------------------------------------------------------------------------
    def _input_entries(self, task: str) -> dict[str, dict[str, Any]]:
        entries = {}
        for param in self.wf.tasks[task].inputs:
            producer = self.wf.producer_of(param.name)
            entries[param.name] = (self.outputs[producer][param.name] if producer
                                   else self.input_refs[(task, param.name)])
        return entries

    def _check_cache(self, task: str) -> list[Any]:
        key = cache_key(self.wf, task, {n: e["content_hash"] for n, e in self._input_entries(task).items()})
        self.cache_keys[task] = key
        hit = self._cache_hit(task, key)
        if hit is not None:
            return hit
        if self.store.cache_lock(key, self.run_id, CACHE_LOCK_TTL_S):
            return self.machine.handle(sm.CacheMiss(task))
        self.cache_waiting[task] = key  # an identical run is computing it: wait for its result
        return []

    def _cache_hit(self, task: str, key: str) -> list[Any] | None:
        entry = self.store.cache_get(key)
        if entry is None or not all(self.artifacts.exists(o["uri"]) for o in entry["outputs"].values()):
            return None
        self.store.save_outputs(self.run_id, task, entry["outputs"])
        self.outputs[task] = entry["outputs"]
        return self.machine.handle(sm.TaskCacheHit(task))

    def _poll_cache_waiters(self) -> None:
        for task, key in list(self.cache_waiting.items()):
            hit = self._cache_hit(task, key)
            if hit is None and self.store.cache_lock(key, self.run_id, CACHE_LOCK_TTL_S):
                hit = self.machine.handle(sm.CacheMiss(task))
            if hit is not None:
                del self.cache_waiting[task]
                self._apply(hit)

    # -- submitting -------------------------------------------------------------------------------------------
    def _submit(self, task: str, attempt: int) -> list[Any]:
        spec_task = self.wf.tasks[task]
        resources = spec_task.options.resources()
        wanted = dask_resources(resources)
        why = unplaceable(self.client, wanted)
        number = self.store.start_attempt(self.run_id, task, None, resources)
        if why:
            error = {"type": "Unschedulable", "message": f"task `{task}` {why}; lower its --cpu/--mem/--gpu or "
                     "use bigger workers", "cell": spec_task.cell, "line": 1, "traceback": ""}
            self.store.finish_attempt(self.run_id, task, number, "failed", kind="user", error=error)
            return [*self.machine.handle(sm.TaskStarted(task, attempt)),
                    *self.machine.handle(sm.TaskFailed(task, attempt, "user", error))]
        inputs = self._input_entries(task)
        size = None
        if spec_task.options.map_over:
            mapped = spec_task.input(spec_task.options.map_over)
            assert mapped is not None
            size = len(self.artifacts.get(inputs[mapped.name]["uri"], as_list(mapped.type)))
        notebook = build_task_notebook(self.wf, task)
        folder = self.home / "runs" / self.run_id / task
        futures = []
        for index in range(size) if size is not None else [None]:
            suffix = f"attempt-{number}" + (f"-item-{index}" if index is not None else "")
            key = f"flyte-{self.run_id}-{task}-{suffix}"
            spec = {
                "key": key, "task": task, "cell": spec_task.cell, "body_line": spec_task.body_line,
                "kernel_name": self.wf.kernel_name, "notebook": notebook, "timeout_s": spec_task.options.timeout_s,
                "env": self.secrets.get(task) or None, "map_index": index,
                "output_notebook": str(folder / f"{suffix}.ipynb"),
                "context": {
                    "task": task, "home": str(self.home), "artifacts": self.artifacts.root_url,
                    "cwd": str(Path(self.wf.path).resolve().parent), "map_index": index,
                    "result_path": str(folder / f"{suffix}.outputs.json"),
                    "inputs": [{"name": p.name, "type": typeref_to_json(p.type), "uri": inputs[p.name]["uri"],
                                "mapped": p.name == spec_task.options.map_over} for p in spec_task.inputs],
                    "outputs": [{"name": p.name, "type": typeref_to_json(p.type)} for p in spec_task.outputs],
                },
            }
            future = self.client.submit(run_task_attempt, spec, key=key, resources=wanted or None, pure=False)
            futures.append(future)
        record = _Attempt(task, attempt, number, futures, size=size)
        self.by_task[task] = record
        for future in futures:
            self.inflight[future.key] = record
        # the task is marked running when a worker reports it started (`_drain_events`), so durations
        # exclude time spent queued
        if size == 0:
            return [*self.machine.handle(sm.TaskStarted(task, attempt)), *self._finish_map(record)]
        return []

    # -- outcomes ---------------------------------------------------------------------------------------------
    def _drain_events(self) -> None:
        """A second start of the same Dask key means its worker was lost: record that attempt as infra."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            key = str(event.get("key"))
            record = self.inflight.get(key)
            if record is None:
                continue
            count = self.starts.get(key, 0) + 1
            self.starts[key] = count
            if count == 1:
                if "time" in event:
                    self.started_at[record.task] = datetime.fromtimestamp(event["time"], UTC)
                self._apply(self.machine.handle(sm.TaskStarted(record.task, record.attempt)))
            else:
                error = {"type": "WorkerLost", "message": f"the worker running task `{record.task}` was lost; "
                         f"Dask reran it on {event.get('worker')}", "cell": None, "line": None, "traceback": ""}
                self.store.finish_attempt(self.run_id, record.task, record.number, "failed", kind="infra",
                                          error=error)
                record.number = self.store.start_attempt(self.run_id, record.task, event.get("worker"),
                                                         self.wf.tasks[record.task].options.resources())

    def _collect(self) -> None:
        for key, record in list(self.inflight.items()):
            future = next(f for f in record.futures if f.key == key)
            if not future.done():
                continue
            del self.inflight[key]
            index = record.futures.index(future)
            if future.status == "error":
                exc = future.exception()
                record.results[index] = {"status": "failed", "kind": "infra", "error": {
                    "type": type(exc).__name__, "message": f"infrastructure error: {exc}", "cell": None,
                    "line": None, "traceback": ""}}
            elif future.status == "cancelled":
                record.results[index] = {"status": "failed", "kind": "infra", "error": {
                    "type": "Cancelled", "message": "the Dask task was cancelled", "cell": None, "line": None,
                    "traceback": ""}}
            else:
                record.results[index] = future.result()
            future.release()
            if len(record.results) == len(record.futures):
                self._apply(self._finish(record))

    def _finish(self, record: _Attempt) -> list[Any]:
        if record.size is not None:
            return self._finish_map(record)
        (result,) = record.results.values()
        return self._conclude(record, result, result.get("outputs"))

    def _finish_map(self, record: _Attempt) -> list[Any]:
        results = [record.results[i] for i in sorted(record.results)]
        failed = next((r for r in results if r["status"] != "succeeded"), None)
        if failed is not None:
            return self._conclude(record, failed, None)
        task = self.wf.tasks[record.task]
        gathered: dict[str, dict[str, Any]] = {}
        for out in task.outputs:
            values = [self.artifacts.get(r["outputs"][out.name]["uri"], out.type) for r in results]
            ref = self.artifacts.put(values, as_list(out.type))
            gathered[out.name] = {"type": as_list(out.type).display(), "uri": ref.uri, "codec": ref.codec,
                                  "content_hash": ref.content_hash, "preview": ref.preview}
            if ref.codec == "json" and all("value" in r["outputs"][out.name] for r in results):
                gathered[out.name]["value"] = [r["outputs"][out.name]["value"] for r in results]
        summary = {"status": "succeeded", "output_notebook": results[0]["output_notebook"] if results else None,
                   "worker": results[0].get("worker") if results else None}
        return self._conclude(record, summary, gathered)

    def _conclude(self, record: _Attempt, result: dict[str, Any], outputs: dict[str, Any] | None) -> list[Any]:
        task = record.task
        self._drain_events()  # a start event still in flight is recorded before the outcome
        if self.machine.task_status.get(task) == "queued":  # its start event is late or lost
            if result.get("started"):
                self.started_at[task] = datetime.fromtimestamp(result["started"], UTC)
            self._apply(self.machine.handle(sm.TaskStarted(task, record.attempt)))
        if result["status"] == "succeeded":
            assert outputs is not None
            self.store.save_outputs(self.run_id, task, outputs)
            self.outputs[task] = outputs
            key = self.cache_keys.get(task)
            if key and self.wf.tasks[task].options.cache and self.use_cache:
                self.store.cache_put(key, task, outputs, self.run_id)
                self.store.cache_unlock(key, self.run_id)
            self.store.finish_attempt(self.run_id, task, record.number, "succeeded",
                                      output_notebook=result.get("output_notebook"))
            return self.machine.handle(sm.TaskSucceeded(task, record.attempt))
        # the store records who is at fault: a timeout is the task's own ("user"); its error type says "Timeout"
        fault = "user" if result["kind"] == "timeout" else result["kind"]
        self.store.finish_attempt(self.run_id, task, record.number, "failed", kind=fault,
                                  error=result["error"], output_notebook=result.get("output_notebook"))
        out = self.machine.handle(sm.TaskFailed(task, record.attempt, result["kind"], result["error"]))
        if self.machine.task_status.get(task) == "failed":
            key = self.cache_keys.get(task)
            if key:
                self.store.cache_unlock(key, self.run_id)
        return out
