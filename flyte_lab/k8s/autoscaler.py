"""Per-profile adaptive scaling: one worker group per resource profile, each scaled between its bounds by
the number of unfinished tasks that ask for its profile's Dask resource.

Dask's `adapt()` (and the dask-kubernetes operator's autoscaler) scale one homogeneous pool; a GPU task must
make a GPU worker appear and go away when idle, so this controller reads the scheduler's demand per profile
and sets each group's replicas. `plan_replicas` is the pure decision; backends carry it out on a local
`SpecCluster` (worker groups are processes: tested for real) or on dask-kubernetes worker groups.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bounds:
    minimum: int = 0
    maximum: int = 4


@dataclass
class ScaleState:
    """Memory between steps: how many consecutive steps each group has wanted fewer workers."""

    low_for: dict[str, int] = field(default_factory=dict)


def plan_replicas(demand: Mapping[str, int], current: Mapping[str, int], bounds: Mapping[str, Bounds],
                  state: ScaleState, down_after: int = 3) -> dict[str, int]:
    """New replica counts for the groups that must change (each worker runs one task at a time).

    Up at once to the demand (capped by `maximum`); down only after `down_after` consecutive steps of lower
    demand, so a pipeline's next task does not find its worker just gone; never outside the bounds.
    """
    out: dict[str, int] = {}
    for tag, bound in bounds.items():
        want = max(bound.minimum, min(bound.maximum, demand.get(tag, 0)))
        have = current.get(tag, 0)
        if want > have:
            state.low_for[tag] = 0
            out[tag] = want
        elif want < have:
            state.low_for[tag] = state.low_for.get(tag, 0) + 1
            if state.low_for[tag] >= down_after:
                state.low_for[tag] = 0
                out[tag] = want
        else:
            state.low_for[tag] = 0
    return out


@dataclass(frozen=True)
class ScaleEvent:
    """One decision carried out: `group` went from `from_replicas` to `to_replicas` workers, and why."""

    at: datetime
    group: str  # as people read it: cpu2-mem4gi-3f2a1b
    profile: str  # the Dask resource its tasks ask for
    from_replicas: int
    to_replicas: int
    reason: str  # waiting_tasks | idle_timeout | min_workers
    waiting: int  # unfinished tasks of the profile when it was decided


def scale_reason(waiting: int, have: int, want: int) -> str:
    if want < have:
        return "idle_timeout"  # plan_replicas goes down only after `down_after` steps of lower demand
    return "waiting_tasks" if waiting > have else "min_workers"


OnScale = Callable[[ScaleEvent], None]


def store_recorder(store: Any, run_id: str, fence: int | None) -> OnScale:
    """An `on_scale` that records each event in the run store, under the driver's fence."""
    def record(event: ScaleEvent) -> None:
        store.record_scale_event(run_id, group=event.group, profile=event.profile, from_replicas=event.from_replicas,
                                 to_replicas=event.to_replicas, reason=event.reason, waiting=event.waiting,
                                 at=event.at, fence=fence)
    return record


class GroupBackend(Protocol):
    def replicas(self) -> dict[str, int]: ...

    def scale(self, tag: str, n: int) -> None: ...


class LocalGroups:
    """Worker groups of a local `SpecCluster`: each group's workers are built from its own spec template."""

    def __init__(self, cluster: Any, templates: Mapping[str, dict[str, Any]]) -> None:
        self.cluster = cluster
        self.templates = dict(templates)  # tag -> {"cls": ..., "options": {...}} (options carry `resources`)
        self._serial = 0

    def replicas(self) -> dict[str, int]:
        counts = dict.fromkeys(self.templates, 0)
        for name in self.cluster.worker_spec:
            tag = str(name).rsplit("#", 1)[0]
            if tag in counts:
                counts[tag] += 1
        return counts

    def scale(self, tag: str, n: int) -> None:
        names = [name for name in self.cluster.worker_spec if str(name).rsplit("#", 1)[0] == tag]
        for name in names[n:]:
            del self.cluster.worker_spec[name]
        for _ in range(n - len(names)):
            self._serial += 1
            self.cluster.worker_spec[f"{tag}#{self._serial}"] = copy.deepcopy(self.templates[tag])
        self.cluster.sync(self.cluster._correct_state)


class KubeGroups:
    """Worker groups of a dask-kubernetes `KubeCluster` (one `DaskWorkerGroup` per profile)."""

    def __init__(self, cluster: Any, group_names: Mapping[str, str]) -> None:
        self.cluster = cluster
        self.group_names = dict(group_names)  # tag -> worker group name ("default" for the cluster's own)
        self._replicas = dict.fromkeys(group_names, 0)

    def replicas(self) -> dict[str, int]:
        return dict(self._replicas)

    def scale(self, tag: str, n: int) -> None:
        self.cluster.scale(n, worker_group=self.group_names[tag])
        self._replicas[tag] = n


class ProfileAutoscaler:
    """Polls the scheduler's demand per profile and scales each group; `step()` is one decision."""

    def __init__(self, client: Any, backend: GroupBackend, bounds: Mapping[str, Bounds], *,
                 interval_s: float = 0.5, down_after: int = 3, labels: Mapping[str, str] | None = None,
                 on_scale: OnScale | None = None) -> None:
        self.client, self.backend, self.bounds = client, backend, dict(bounds)
        self.interval_s, self.down_after = interval_s, down_after
        self.labels = dict(labels or {})  # tag -> the group's readable name, for the events
        self.on_scale = on_scale
        self.state = ScaleState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def demand(self) -> dict[str, int]:
        import cloudpickle

        from flyte_lab.k8s import scheduler_probe

        # by value: the scheduler imports nothing of flyte_lab
        cloudpickle.register_pickle_by_value(scheduler_probe)
        try:
            return dict(self.client.run_on_scheduler(scheduler_probe.demand_by_resource))
        finally:
            cloudpickle.unregister_pickle_by_value(scheduler_probe)

    def step(self) -> dict[str, int]:
        demand, current = self.demand(), self.backend.replicas()
        changes = plan_replicas(demand, current, self.bounds, self.state, self.down_after)
        for tag, n in changes.items():
            log.info("flyte_lab: scaling worker group %s to %d", tag, n)
            self.backend.scale(tag, n)
            have, waiting = current.get(tag, 0), demand.get(tag, 0)
            self._report(ScaleEvent(at=datetime.now(UTC), group=self.labels.get(tag, tag), profile=tag,
                                    from_replicas=have, to_replicas=n, reason=scale_reason(waiting, have, n),
                                    waiting=waiting))
        return changes

    def _report(self, event: ScaleEvent) -> None:
        if self.on_scale is None:
            return
        try:
            self.on_scale(event)
        except Exception as err:  # recording is for people; scaling goes on without it
            log.warning("flyte_lab: could not record scaling %s to %d (%s)", event.group, event.to_replicas, err)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                with contextlib.suppress(Exception):  # a failed poll is retried at the next interval
                    self.step()

        self._thread = threading.Thread(target=loop, name="flyte-lab-autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
