"""The driver: turns Dask, store, clock and user stimuli into state-machine events and carries out
the instructions that come back. It holds no protocol of its own (see `state_machine.py`).

It is the only writer of run state and writes before it acts; every write carries the run's
fencing token, so a driver whose lease was taken over cannot overwrite its successor's rows.
Monitoring (CLI progress, widget, dashboard) reads the store or subscribes to `on_change`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flyte_lab.engine import state_machine as sm
from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.engine.attempt_records import AttemptFailed, AttemptResult, AttemptSucceeded, ErrorRecord
from flyte_lab.engine.attempt_spec import (
    attempt_spec,
    batch_spec,
    gathered_type,
    setup_modules,
    split_outputs,
    split_spec,
)
from flyte_lab.engine.cache_keys import cache_key
from flyte_lab.engine.clusters import task_resources, unplaceable
from flyte_lab.engine.element_batches import batch_size, batches
from flyte_lab.engine.task_notebook import build_batch_notebook, build_split_notebook, build_task_notebook
from flyte_lab.engine.worker.live_output import OUTPUT_TOPIC
from flyte_lab.engine.worker.run_attempt import EVENT_TOPIC, cancel_attempts, run_task_attempt
from flyte_lab.errors import ClusterLost, DriverError, FlyteLabError, LeaseLostError
from flyte_lab.graph.header import memory_bytes
from flyte_lab.graph.model import Workflow
from flyte_lab.k8s.pod_deaths import OOM_KILLED
from flyte_lab.statuses import TASK_DONE, CancelSource, RunStatus, TaskStatus
from flyte_lab.store import RunStore
from flyte_lab.store.task_output import OutputChunk

log = logging.getLogger(__name__)
# the loop wakes at least this often: the state machine decides when leases, caches and the cancel flag need a
# look, so a cancel from another process is seen within sm.CANCEL_CHECK_S + TICK_S of its request
TICK_S = 0.25


@dataclass
class _Attempt:
    task: str
    attempt: int  # the state machine's number (a rerun after a lost worker moves it on: `sm.Rerun`)
    futures: list[Any]
    results: dict[int, AttemptResult] = field(default_factory=dict)  # by map element (0: the one task)
    size: int | None = None  # map-over fan-out
    batches: list[list[int]] = field(default_factory=lambda: [[0]])  # each future's elements (`element_batches`)
    concluded: int = 0  # futures whose results are in
    splitting: bool = False  # its one future is the kernel splitting the mapped list (`_split_in_kernel`)
    _index: dict[str, int] = field(default_factory=dict)

    def index_of(self, key: str) -> int:
        """Which element a Dask key is (a dict: a 200-element map-over is looked up 200 times)."""
        if not self._index:
            self._index = {str(f.key): i for i, f in enumerate(self.futures)}
        return self._index[key]


@dataclass
class Progress:
    """What a progress display needs: map-over elements count one each."""

    status: dict[str, str]
    done: int
    total: int
    running: list[str]


class RunDriver:
    def __init__(self, *, store: RunStore, artifacts: ArtifactStore, wf: Workflow, run_id: str, client: Any,
                 fence: int, input_refs: dict[tuple[str, str], dict[str, Any]],
                 secrets: dict[str, dict[str, str]], scrub: list[str] | None = None, use_cache: bool = True,
                 prior: dict[str, str] | None = None, prior_attempts: dict[str, int] | None = None,
                 prior_outputs: dict[str, dict[str, Any]] | None = None,
                 tasks: list[str] | None = None,
                 lease_ttl_s: float = sm.LEASE_TTL_S,
                 on_change: Callable[[Progress], None] | None = None,
                 on_event: Callable[[str], None] | None = None,
                 expected_env: dict[str, Any] | None = None) -> None:
        self.store, self.artifacts, self.wf, self.run_id, self.client = store, artifacts, wf, run_id, client
        self.fence = fence
        self.lease_ttl_s = lease_ttl_s
        self.input_refs = input_refs  # (task, input) -> artifact entry, for workflow inputs
        self.secrets = secrets  # task -> env for its kernel; never stored
        self.scrub = list(scrub or [])  # env names no other kernel may see
        self.use_cache = use_cache
        self.outputs: dict[str, dict[str, Any]] = dict(prior_outputs or {})
        self.on_change = on_change
        self.on_event = on_event
        self.expected_env = expected_env  # a remote cluster: each worker checks itself against these versions
        plans = [sm.TaskPlan(name=name, upstream=tuple(wf.upstream(name)), retries=wf.tasks[name].options.retries,
                             cache=wf.tasks[name].options.cache and use_cache)
                 for name in wf.order if tasks is None or name in tasks]  # a partial run's tasks: closed upstream
        self.machine = sm.RunStateMachine(plans, prior=prior, prior_attempts=prior_attempts, lease_ttl_s=lease_ttl_s)
        self.inflight: dict[str, _Attempt] = {}  # dask key -> attempt
        self.by_task: dict[str, _Attempt] = {}
        self.cache_keys: dict[str, str] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.output: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()  # live output, stored each turn
        self.worker_names: dict[str, str | None] = {}  # Dask key -> the name of the worker that last began it
        self.keys: dict[str, tuple[_Attempt, int]] = {}  # every Dask key submitted -> its attempt and element
        # anything the loop must look at (a finished future's key, or None for a worker event) wakes it
        self.wakeups: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.finished: list[str] = []
        self.starts: dict[str, int] = {}
        self.split = split_outputs(wf)
        self.notebooks: dict[str, Any] = {}  # task -> its task notebook, built once, reused by every attempt
        self.setup_modules = setup_modules(wf)
        self.notes: set[str] = set()  # said and recorded already (`_note`)
        self.output_failed = False  # a live output write failed (said once: `_view_write`)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> str:
        self.client.subscribe_topic(EVENT_TOPIC, self._on_worker_event)
        self.client.subscribe_topic(OUTPUT_TOPIC, lambda event: self.output.put(event[1]))
        try:
            self.store.set_run_status(self.run_id, RunStatus.RUNNING, fence=self.fence)
            self._feed(sm.RunStarted())
            while not self.machine.done:
                self._wait()
                self._feed(sm.Tick(time.monotonic()))
                self._drain_events()
                self._store_output()
                self._collect()
            self._store_output()
        except KeyboardInterrupt:
            self._feed_safely(sm.CancelRequested(CancelSource.INTERRUPT))
            raise
        except LeaseLostError as exc:
            self._feed_safely(sm.LeaseLost(str(exc.data.get("holder") or "")))
        except ClusterLost as exc:
            self._feed_safely(sm.DriverCrashed(ErrorRecord.infrastructure("ClusterLost", exc.message)))
            raise
        except Exception as exc:
            self._feed_safely(sm.DriverCrashed(ErrorRecord.driver_failed(f"{type(exc).__name__}: {exc}",
                                                                         traceback.format_exc(limit=8))))
            if isinstance(exc, FlyteLabError):
                raise
            raise DriverError(f"run `{self.run_id}` failed inside the driver ({type(exc).__name__}: {exc}); it is "
                              "recorded as failed with this error (--debug shows the traceback)",
                              run_id=self.run_id) from exc
        finally:
            for topic in (EVENT_TOPIC, OUTPUT_TOPIC):
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(topic)
            if not self.machine.abandoned:
                with contextlib.suppress(Exception):
                    self.store.release_run(self.run_id, self.fence)
        if self.machine.abandoned:
            raise LeaseLostError(f"run `{self.run_id}` was taken over by another driver; this one stopped",
                                 run_id=self.run_id)
        return self.machine.run_status

    def _on_worker_event(self, event: Any) -> None:
        self.events.put(event[1])
        self.wakeups.put(None)

    def _on_future_done(self, future: Any) -> None:
        self.wakeups.put(str(future.key))

    def _wait(self) -> None:
        """Sleep until a future finishes or a worker reports, or for one tick (leases, cache rechecks, cancel)."""
        try:
            woken = [self.wakeups.get(timeout=TICK_S)]
        except queue.Empty:
            # a quiet tick: also look at every future, so no completion can be missed for good
            self.finished.extend(k for k, r in self.inflight.items() if r.futures[r.index_of(k)].done())
            return
        while True:
            try:
                woken.append(self.wakeups.get_nowait())
            except queue.Empty:
                break
        self.finished.extend(key for key in woken if key is not None)

    def _feed(self, event: sm.Event) -> None:
        self._apply(self.machine.handle(event))

    def _feed_safely(self, event: sm.Event) -> None:
        """On the way out: carry out what the machine says, each step on its own, whatever fails."""
        for ins in self.machine.handle(event):
            try:
                self._apply([ins])
            except LeaseLostError:
                return  # someone else owns the run now: write nothing more
            except Exception:
                log.exception("flyte_lab: while stopping run %s", self.run_id)

    def progress(self) -> Progress:
        status = self.machine.task_status
        done = total = 0
        for name, state in status.items():
            record = self.by_task.get(name)
            size = record.size if record is not None and record.size is not None else 1
            total += max(size, 1)
            if state in TASK_DONE:  # finished successfully: the one definition of progress (`run_progress`)
                done += max(size, 1)
            elif record is not None and record.size is not None and state == TaskStatus.RUNNING:
                done += sum(1 for r in record.results.values() if isinstance(r, AttemptSucceeded))
        return Progress(status, done, total, [n for n, s in status.items() if s == TaskStatus.RUNNING])

    def _note(self, note: Any) -> None:
        """What a worker reports about how this run's tasks run (e.g. why their kernels are started, not forked):
        said and recorded on the run once, however many tasks and workers report it; one note per line."""
        for one in str(note or "").splitlines():
            if not one or one in self.notes:
                continue
            self.notes.add(one)
            self.store.add_run_note(self.run_id, one, fence=self.fence)
            if self.on_event:
                self._say(f"note: {one}")
            else:
                log.warning("flyte_lab: run %s: %s", self.run_id, one)

    def _say(self, text: str) -> None:
        if self.on_event:
            self.on_event(text)

    # -- carrying out instructions ----------------------------------------------------------------------------
    def _apply(self, instructions: list[sm.Instruction]) -> None:
        work = list(instructions)
        while work:
            ins = work.pop(0)
            events = self._carry_out(ins)
            for event in events:
                work.extend(self.machine.handle(event))

    def _carry_out(self, ins: sm.Instruction) -> list[sm.Event]:
        if isinstance(ins, sm.MarkTask):
            self._mark(ins)
        elif isinstance(ins, sm.StartAttempt):
            self.store.start_attempt(self.run_id, ins.task, ins.worker, self.wf.tasks[ins.task].options.resources(),
                                     number=ins.attempt, fence=self.fence)
        elif isinstance(ins, sm.FinishAttempt):
            self._finish_attempt(ins)
        elif isinstance(ins, sm.RecordCacheHit):
            outputs = self.outputs[ins.task] = self._declared_types(ins.task, ins.outputs)
            self.store.save_outputs(self.run_id, ins.task, outputs, fence=self.fence)
            self.store.set_task_status(self.run_id, ins.task, TaskStatus.CACHED,
                                       cache_key=self.cache_keys.get(ins.task), fence=self.fence)
            self._changed()
        elif isinstance(ins, sm.FinishRun):
            self.store.set_run_status(self.run_id, ins.status, error=_stored(ins.error), cancelled_by=ins.cancelled_by,
                                      fence=self.fence)
        elif isinstance(ins, sm.CheckCache):
            return [self._claim_cache(ins.task)]
        elif isinstance(ins, sm.Submit):
            return self._submit(ins.task, ins.attempt)
        elif isinstance(ins, sm.Retrying):
            self._say(f"{ins.task}: attempt {ins.failed_attempt} failed: {ins.error.type}: "
                      f"{_first_line(ins.error.message)}; retrying ({ins.next_try}/{ins.max_tries})")
        elif isinstance(ins, sm.Rerun):
            self.by_task[ins.task].attempt = ins.attempt  # what its live Dask task reports from now on
            self._say(f"{ins.task}: its worker was lost; Dask reran it on {ins.worker}")
        elif isinstance(ins, sm.RenewLeases):
            return self._renew(ins)
        elif isinstance(ins, sm.CheckCancel):
            by = self.store.cancel_requested(self.run_id)
            return [sm.CancelRequested(by)] if by is not None else []
        elif isinstance(ins, sm.ReleaseCacheLock):
            key = self.cache_keys.get(ins.task)
            if key:
                self.store.cache_unlock(key, self.run_id)
        elif isinstance(ins, sm.KillAttempts):
            self._kill(ins.tasks)
        elif isinstance(ins, sm.Abandon):
            self._say(f"run {self.run_id} is now driven by {ins.holder or 'another driver'}; this driver stops")
        return []

    def _mark(self, ins: sm.MarkTask) -> None:
        # a failed task shows the executed notebook its failed attempt recorded (`FinishAttempt`): for a map-over,
        # the failing element's
        at = datetime.fromtimestamp(ins.at, UTC) if ins.at is not None else None
        self.store.set_task_status(self.run_id, ins.task, ins.status, error=_stored(ins.error), at=at,
                                   fence=self.fence)
        self._changed()

    def _finish_attempt(self, ins: sm.FinishAttempt) -> None:
        result = ins.result
        if isinstance(result, AttemptFailed):
            status = ins.run_ended or TaskStatus.FAILED  # a run's stop closes its attempts with the run's status
            kind = None if status == RunStatus.CANCELLED else result.fault  # a cancel is nobody's fault
            self.store.finish_attempt(self.run_id, ins.task, ins.attempt, status, kind=kind,
                                      error=result.error.to_dict(), output_notebook=result.output_notebook,
                                      fence=self.fence, usage=result.usage)
            return
        outputs = self.outputs[ins.task] = self._declared_types(ins.task, result.outputs)
        self.store.commit_success(self.run_id, ins.task, ins.attempt, outputs, output_notebook=result.output_notebook,
                                  cache_key=self.cache_keys.get(ins.task), cache_entry=ins.cache, fence=self.fence,
                                  usage=result.usage)
        self._changed()

    def _changed(self) -> None:
        if self.on_change:
            self.on_change(self.progress())

    def _declared_types(self, task: str, outputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each output's type as its header declares it, never as the kernel's result says: `%flyte_load`
        evaluates this text in the user's kernel, and task code may write whatever result file it likes."""
        spec = self.wf.tasks[task]
        declared = {p.name: (gathered_type(self.wf, task, p.name) if spec.options.map_over else p.type).display()
                    for p in spec.outputs}
        return {name: {**entry, "type": declared[name]} for name, entry in outputs.items() if name in declared}

    def _renew(self, ins: sm.RenewLeases) -> list[sm.Event]:
        cancel = self.store.renew_run(self.run_id, self.fence, self.lease_ttl_s)
        keys = [self.cache_keys[t] for t in ins.cache_tasks if t in self.cache_keys]
        for lost in self.store.cache_renew(keys, self.run_id, self.lease_ttl_s):
            log.warning("flyte_lab: run %s lost its cache lock %s (its lease lapsed); computing anyway",
                        self.run_id, lost[:12])
        return [sm.CancelRequested(cancel)] if cancel is not None else []

    def _kill(self, tasks: tuple[str, ...]) -> None:
        keys: list[str] = []
        for task in tasks:
            record = self.by_task.get(task)
            if record is not None:
                keys += [f.key for f in record.futures]
                with contextlib.suppress(Exception):
                    self.client.cancel(record.futures)
        if keys:
            with contextlib.suppress(Exception):  # a worker that is gone has no kernel left to kill
                self.client.run(cancel_attempts, keys)

    # -- cache ------------------------------------------------------------------------------------------------
    def _input_entries(self, task: str) -> dict[str, dict[str, Any]]:
        entries = {}
        for param in self.wf.tasks[task].inputs:
            producer = self.wf.producer_of(param.name)
            entries[param.name] = (self.outputs[producer][param.name] if producer
                                   else self.input_refs[(task, param.name)])
        return entries

    def key_of(self, task: str) -> str:
        key = cache_key(self.wf, task, {n: e["content_hash"] for n, e in self._input_entries(task).items()})
        self.cache_keys[task] = key
        return key

    def _claim_cache(self, task: str) -> sm.Event:
        key = self.cache_keys.get(task) or self.key_of(task)
        state, found = self.store.cache_claim(key, self.run_id, task, self.lease_ttl_s)
        if state == "hit" and not all(self.artifacts.exists(o["uri"]) for o in found["outputs"].values()):
            # the entry's artifacts are gone: compute it again
            state, found = self.store.cache_claim(key, self.run_id, task, self.lease_ttl_s, ignore_entry=True)
        if state == "hit":
            return sm.TaskCacheHit(task, found["outputs"])
        if state == "locked":
            return sm.CacheLocked(task)
        if task not in self.machine.waiting_on_cache:
            self._say(f"{task}: waiting for run {found} that is computing the same cached result")
        return sm.CacheBusy(task, str(found))

    # -- submitting -------------------------------------------------------------------------------------------
    def _submit(self, task: str, attempt: int) -> list[sm.Event]:
        spec_task = self.wf.tasks[task]
        wanted = task_resources(self.client, self.wf, task)
        why = unplaceable(self.client, wanted)
        if task not in self.cache_keys:
            self.key_of(task)  # recorded with the result, so a fix-and-continue resume can compare
        if why:
            error = ErrorRecord.refused("Unschedulable", f"task `{task}` {why}; lower its --cpu/--mem/--gpu or use "
                                        "bigger workers", cell=spec_task.cell, line=1)
            return [sm.TaskStarted(task, attempt),
                    sm.TaskFailed(task, attempt, AttemptFailed(kind="user", error=error))]
        inputs = self._input_entries(task)
        if not spec_task.options.map_over:
            return self._fan_out(task, attempt, inputs, None)
        mapped_param = spec_task.input(spec_task.options.map_over)
        assert mapped_param is not None
        # element references only: a manifest or a JSON list is split as JSON, nothing is decoded here
        elements = self.artifacts.element_uris(inputs[mapped_param.name]["uri"], mapped_param.type)
        if elements is None:
            return self._split_in_kernel(task, attempt, inputs[mapped_param.name]["uri"])
        return self._fan_out(task, attempt, inputs, elements)

    def _fan_out(self, task: str, attempt: int, inputs: dict[str, dict[str, Any]],
                 elements: list[str] | None) -> list[sm.Event]:
        """Submit the attempt: one Dask task, or for a map-over (`elements`) one per batch of its elements."""
        if elements is None:
            return self._submit_specs(_Attempt(task, attempt, []), [self._element_spec(task, attempt, inputs)])
        size = batch_size(len(elements), getattr(self.client, "flyte_lab_slots", None),
                          self.wf.tasks[task].options.batch)
        groups = batches(len(elements), size)
        specs = [self._element_spec(task, attempt, inputs, group[0], elements[group[0]]) if len(group) == 1
                 else batch_spec(wf=self.wf, task=task, run_id=self.run_id, number=attempt, inputs=inputs,
                                 artifacts=self.artifacts, artifact_key=self.artifacts.hmac_key_hex,
                                 secrets=self.secrets.get(task), scrub=self.scrub, split=self.split,
                                 notebook=build_batch_notebook(self.wf, task, group),
                                 elements=[(i, elements[i]) for i in group], modules=self.setup_modules)
                 for group in groups]
        record = _Attempt(task, attempt, [], size=len(elements), batches=groups)
        if not specs:  # an empty list: nothing to run
            self.by_task[task] = record
            return [sm.TaskStarted(task, attempt), *self._finish_map(record)]
        return self._submit_specs(record, specs)

    def _element_spec(self, task: str, attempt: int, inputs: dict[str, dict[str, Any]], index: int | None = None,
                      element: str | None = None) -> dict[str, Any]:
        """The attempt of the task (`index` None) or of one map-over element, in a kernel of its own."""
        notebook = self.notebooks.get(task)
        if notebook is None:
            notebook = self.notebooks[task] = build_task_notebook(self.wf, task)
        return attempt_spec(wf=self.wf, task=task, run_id=self.run_id, number=attempt, inputs=inputs,
                            artifacts=self.artifacts, artifact_key=self.artifacts.hmac_key_hex,
                            secrets=self.secrets.get(task), scrub=self.scrub, split=self.split, notebook=notebook,
                            map_index=index, element_uri=element, modules=self.setup_modules)

    def _submit_specs(self, record: _Attempt, specs: list[dict[str, Any]]) -> list[sm.Event]:
        # the task is marked running when a worker reports it started (`_drain_events`), so durations
        # exclude time spent queued
        self._track(record, specs)
        return []

    def _split_in_kernel(self, task: str, attempt: int, uri: str) -> list[sm.Event]:
        """The mapped list is stored in a form only a kernel may decode (a pickle, e.g. a cached list no map-over
        read when it was stored): a kernel stores it element by element first, then the elements fan out."""
        notebook = self.notebooks.get(f"{task} split")
        if notebook is None:
            notebook = self.notebooks[f"{task} split"] = build_split_notebook(self.wf, task)
        spec = split_spec(wf=self.wf, task=task, run_id=self.run_id, number=attempt, uri=uri, artifacts=self.artifacts,
                          artifact_key=self.artifacts.hmac_key_hex, scrub=self.scrub, notebook=notebook,
                          modules=self.setup_modules)
        self._track(_Attempt(task, attempt, [], splitting=True), [spec])
        return []

    def _track(self, record: _Attempt, specs: list[dict[str, Any]]) -> _Attempt:
        wanted = task_resources(self.client, self.wf, record.task)
        if self.expected_env is not None:
            for spec in specs:
                spec["expected_env"] = self.expected_env
        record.futures = [self.client.submit(run_task_attempt, spec, key=spec["key"], resources=wanted or None,
                                             pure=False) for spec in specs]
        self.by_task[record.task] = record
        for future, group in zip(record.futures, record.batches, strict=True):
            self.keys[str(future.key)] = (record, group[0])
            self.inflight[future.key] = record
            future.add_done_callback(self._on_future_done)  # called at once if it is already done
        return record

    # -- outcomes ---------------------------------------------------------------------------------------------
    def _drain_events(self) -> None:
        """Worker reports: the first start of a Dask key starts the task; a second means its worker was lost."""
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
            lost = self.worker_names.get(key)
            self.worker_names[key] = event.get("name")
            if count == 1:
                self._feed(sm.TaskStarted(record.task, record.attempt, event.get("time")))
            else:
                self._feed(sm.AttemptRestarted(record.task, record.attempt, event.get("worker"),
                                               failed=self._why_lost(record.task, lost)))

    def _why_lost(self, task: str, worker_name: str | None) -> AttemptFailed | None:
        """What the cluster says killed the worker that ran `task` (a k8s pod OOMKilled), as the lost attempt's
        end; None when it cannot tell (then it is a lost worker)."""
        why = getattr(self.client, "flyte_lab_why_lost", None)
        if why is None or why(worker_name) != OOM_KILLED:
            return None
        mem = self.wf.tasks[task].options.mem
        error = ErrorRecord.pod_out_of_memory(task, memory_bytes(mem) if mem else None, worker_name,
                                              cell=self.wf.tasks[task].cell)
        return AttemptFailed(kind="oom", error=error, worker=worker_name)

    def _store_output(self) -> None:
        """What running attempts printed since the last turn, in one write; an attempt's first mid-run save of
        its executed notebook is recorded so readers can open it while it runs."""
        chunks: list[OutputChunk] = []
        while True:
            try:
                message = self.output.get_nowait()
            except queue.Empty:
                break
            found = self.keys.get(str(message.get("key")))
            if found is None:
                continue
            record, element = found
            if record.splitting:
                continue  # the kernel splitting a mapped list runs no task code
            if message.get("lines"):
                element = int(message.get("element", element))  # a batch says which of its elements printed
                chunks.append(OutputChunk(task=record.task, attempt=record.attempt,
                                          element=element if record.size is not None else None,
                                          first=int(message["first"]),
                                          lines=[(str(s), str(t)) for s, t in message["lines"]],
                                          at=float(message.get("time") or time.time())))
            if message.get("notebook") and record.size is None:
                self._view_write(self.store.record_attempt_notebook, self.run_id, record.task, record.attempt,
                                 str(message["notebook"]), fence=self.fence)
        self._view_write(self.store.append_output, self.run_id, chunks, fence=self.fence)

    def _view_write(self, write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Output is only a view of the run: a failure to store it (a full disk, a line the database refuses)
        is said once and the run goes on; a lost lease still stops this driver."""
        try:
            write(*args, **kwargs)
        except LeaseLostError:
            raise
        except Exception as exc:
            if not self.output_failed:
                self.output_failed = True
                # the first line only: a database error goes on with the statement and the lines it carried
                said = (str(exc).splitlines() or [""])[0][:300]
                log.warning("flyte_lab: run %s: live output not stored (%s: %s); the run goes on, its executed "
                            "notebooks keep everything", self.run_id, type(exc).__name__, said)

    def _collect(self) -> None:
        finished, self.finished = self.finished, []
        # the values of every future that finished, in one round trip to the client's loop (not one per map
        # element: a `result()` each costs a cross-thread hop)
        ready = [self.inflight[key].futures[self.inflight[key].index_of(key)] for key in dict.fromkeys(finished)
                 if key in self.inflight]
        done = [f for f in ready if f.status == "finished"]
        try:
            values = dict(zip([f.key for f in done], self.client.gather(done), strict=True)) if done else {}
        except Exception:  # e.g. a result lost with its worker: each future answers for itself below
            values = {}
        for key in finished:
            record = self.inflight.get(key)
            if record is None:
                continue  # an attempt already concluded (or a duplicate wake-up)
            index = record.index_of(key)
            future = record.futures[index]
            del self.inflight[key]
            if future.status == "cancelled" and self.client.status != "running":
                raise self._cluster_lost()
            results: list[AttemptResult]
            if future.status == "error":
                exc = future.exception()
                results = [AttemptFailed(kind="infra", error=ErrorRecord.infrastructure(
                    type(exc).__name__, f"infrastructure error: {exc}"))]
            elif future.status == "cancelled":
                results = [AttemptFailed(kind="cancelled", error=ErrorRecord.cancelled("the Dask task was cancelled"))]
            else:
                value = values[key] if key in values else future.result()
                results = value if isinstance(value, list) else [value]  # a batch: one per element that ran
                for result in results:
                    self._note(result.kernel_note)
            # a batch that failed part way: its elements after the failing one have no result (never ran)
            record.results.update(zip(record.batches[index], results, strict=False))
            record.concluded += 1
            future.release()
            if record.concluded == len(record.futures):
                for other in record.futures:
                    self.inflight.pop(other.key, None)
                self._apply_events(self._finish(record))

    def _cluster_lost(self) -> ClusterLost:
        """The scheduler went away with this run's tasks (the shared executor stopped or was killed, a tcp://
        scheduler died): every running attempt is lost at once; resume reruns them on a live cluster."""
        executor = getattr(self.client, "flyte_lab_executor", None)
        what = (f"the shared executor (pid {executor.pid}) stopped" if executor is not None
                else f"the Dask scheduler {self.client.scheduler.address} went away")
        return ClusterLost(f"run `{self.run_id}`: {what} while its tasks ran; `flyte-lab resume {self.run_id}` "
                           "reruns what did not finish", run_id=self.run_id)

    def _apply_events(self, events: list[sm.Event]) -> None:
        for event in events:
            self._feed(event)

    def _finish(self, record: _Attempt) -> list[sm.Event]:
        if record.size is not None:
            return self._finish_map(record)
        result = record.results[0]
        if record.splitting and isinstance(result, AttemptSucceeded):
            return self._split_done(record, result)
        return self._conclude(record, result)

    def _split_done(self, record: _Attempt, result: AttemptSucceeded) -> list[sm.Event]:
        """The splitting kernel stored the mapped list as a manifest: fan its elements out, same attempt."""
        spec_task = self.wf.tasks[record.task]
        mapped = spec_task.input(spec_task.options.map_over or "")
        assert mapped is not None
        stored = result.outputs.get(mapped.name) or {}
        uri = stored.get("uri")
        elements = self.artifacts.element_uris(uri, mapped.type) if isinstance(uri, str) else None
        if elements is None:
            error = ErrorRecord.infrastructure("ArtifactError", f"the kernel splitting `{mapped.name}` for task "
                                               f"`{record.task}` stored no list manifest", cell=spec_task.cell, line=1)
            return self._conclude(record, AttemptFailed(kind="infra", error=error,
                                                        output_notebook=result.output_notebook,
                                                        worker=result.worker, started=result.started))
        return self._fan_out(record.task, record.attempt, self._input_entries(record.task), elements)

    def _finish_map(self, record: _Attempt) -> list[sm.Event]:
        ordered = [record.results[i] for i in sorted(record.results)]
        failed = next((r for r in ordered if isinstance(r, AttemptFailed)), None)
        if failed is not None:
            return self._conclude(record, failed)
        results = [r for r in ordered if isinstance(r, AttemptSucceeded)]
        if len(results) != record.size:  # never expected: a batch that ended early without saying why
            error = ErrorRecord.infrastructure("MissingElements", f"task `{record.task}`: {len(results)} of its "
                                               f"{record.size} elements reported a result",
                                               cell=self.wf.tasks[record.task].cell)
            return self._conclude(record, AttemptFailed(kind="infra", error=error))
        gathered: dict[str, dict[str, Any]] = {}
        for out in self.wf.tasks[record.task].outputs:
            # a manifest of the elements' own artifacts: the driver never reads or decodes a value
            ref = self.artifacts.put_manifest([r.outputs[out.name]["uri"] for r in results], out.type)
            gathered[out.name] = {"type": gathered_type(self.wf, record.task, out.name).display(), "uri": ref.uri,
                                  "codec": ref.codec, "content_hash": ref.content_hash, "preview": ref.preview}
            if all("value" in r.outputs[out.name] for r in results):
                gathered[out.name]["value"] = [r.outputs[out.name]["value"] for r in results]
        first = results[0] if results else None
        return self._conclude(record, AttemptSucceeded(outputs=gathered,
                                                       output_notebook=first.output_notebook if first else None,
                                                       worker=first.worker if first else None,
                                                       usage=combined_usage(r.usage for r in results)))

    def _conclude(self, record: _Attempt, result: AttemptResult) -> list[sm.Event]:
        task = record.task
        self._drain_events()  # a start event still in flight is recorded before the outcome
        events: list[sm.Event] = []
        if self.machine.task_status.get(task) == TaskStatus.QUEUED:  # its start event is late or lost
            events.append(sm.TaskStarted(task, record.attempt, result.started))
        if isinstance(result, AttemptSucceeded):
            return [*events, sm.TaskSucceeded(task, record.attempt, result)]
        return [*events, sm.TaskFailed(task, record.attempt, result)]


def _stored(error: ErrorRecord | None) -> dict[str, Any] | None:
    return None if error is None else error.to_dict()


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def combined_usage(usages: Iterable[dict[str, float] | None]) -> dict[str, float] | None:
    """A map-over task's usage: the largest element's peak (each element is a kernel of its own, so that is
    what one needs), the elements' CPU seconds summed."""
    known = [u for u in usages if u]
    if not known:
        return None
    return {"peak_rss_bytes": max(u["peak_rss_bytes"] for u in known),
            "cpu_s": round(sum(u["cpu_s"] for u in known), 3)}
