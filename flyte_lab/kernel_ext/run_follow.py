"""Launch a run from a kernel and keep its widget in step with the run store.

The engine runs in a background thread of the kernel (the same
`engine.api.run_notebook` as `flyte-lab run`); the widget never looks at the
driver: a poller reads the store every `POLL_S` seconds, and once more when
the engine returns, so the final picture is exact. Each poll also reads the
lines the run's tasks printed since the last one (`RunStore.task_output` from
`since`), kept per task by `output_tail.OutputTails`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from flyte_lab.kernel_ext.output_tail import OutputTails
from flyte_lab.kernel_ext.run_widget import RunWidget
from flyte_lab.run_progress import ListLength, element_counts, manifest_lengths
from flyte_lab.statuses import CancelSource, RunStatus

POLL_S = 0.5


class RunFollower:
    """One `%flyte_run`: the engine's thread, the poller and the widget."""

    def __init__(self, path: str, params: dict[str, Any], source_note: str, *, cluster: str = "local",
                 workers: int | None = None, use_cache: bool = True, launch: dict[str, Any] | None = None) -> None:
        self.path, self.params = path, params
        self.launch = dict(launch or {})  # `run_notebook`'s partial-run keywords (`graph/selection.launch_options`)
        self.cluster, self.workers, self.use_cache = cluster, workers, use_cache
        self.widget = RunWidget(source_note, on_cancel=lambda: self.cancel(CancelSource.WIDGET),
                                on_resume=self.resume, on_relaunch=self.relaunch)
        self.run_id: str | None = None
        self.error: BaseException | None = None
        self.record: dict[str, Any] | None = None
        self.finished = threading.Event()
        self._engine: threading.Thread | None = None
        self._poller: threading.Thread | None = None
        self._store: Any = None
        self._list_length: ListLength | None = None
        self._sizes: dict[str, int] = {}
        self._tails: OutputTails | None = None  # of the run followed now (a Relaunch starts another)

    def __repr__(self) -> str:
        state = RunStatus.RUNNING if not self.finished.is_set() else (self.record or {}).get("status", "refused")
        return f"<flyte_lab run {self.run_id or '(not created)'}: {state}>"

    def _ipython_display_(self) -> None:
        self.widget._ipython_display_()

    # -- the engine's thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._engine = threading.Thread(target=self._drive, args=(self._launch,), name="flyte-lab-run", daemon=True)
        self._engine.start()

    def _launch(self) -> dict[str, Any]:
        from flyte_lab.engine.api import run_notebook

        return run_notebook(self.path, self.params, cluster=self.cluster, workers=self.workers,
                            use_cache=self.use_cache, on_created=self._created,
                            keep_cluster=True,  # the next `%flyte_run` here starts nothing again
                            **self.launch)

    def _drive(self, engine: Callable[[], dict[str, Any]]) -> None:
        try:
            self.record = engine()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    # -- the widget's Resume and Relaunch: this follower (and its widget) moves on to what they start ----------

    def resume(self) -> None:
        """Continue this ended run with the notebook as it is now on disk, in this kernel."""
        from flyte_lab.engine.api import resume_run

        run_id = self.run_id
        if run_id is not None and self.finished.is_set():
            self._again(run_id, lambda: resume_run(run_id, keep_cluster=True))

    def relaunch(self) -> None:
        """A new run of the same notebook with the same parameters; the widget shows it from its start."""
        if self.finished.is_set():
            self.run_id = None
            self._again(None, self._launch)

    def _again(self, run_id: str | None, engine: Callable[[], dict[str, Any]]) -> None:
        if self._poller is not None:
            self._poller.join()  # the last picture of the run before is drawn
        self.record, self.error = None, None
        self.finished.clear()
        self.widget.following(run_id)
        self._engine = threading.Thread(target=self._drive, args=(engine,), name="flyte-lab-run", daemon=True)
        self._engine.start()
        self.follow_in_background()

    def _created(self, run_id: str) -> None:
        self.run_id = run_id

    # -- following the store ----------------------------------------------------------------------------

    def follow(self) -> None:
        """Refresh the widget from the store until the engine returns, then once more (exact final state)."""
        try:
            while not self.finished.wait(POLL_S):
                self.refresh()
            self.refresh()
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def follow_in_background(self) -> None:
        self._poller = threading.Thread(target=self.follow, name="flyte-lab-widget", daemon=True)
        self._poller.start()

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until the run ended and the widget shows its final state; the `show --json` record."""
        if self._poller is not None:
            self._poller.join(timeout)
        elif self._engine is not None:
            self._engine.join(timeout)
        return self.record

    def refresh(self) -> None:
        if self.run_id is None:
            if self.finished.is_set() and self.error is not None:
                # followed in the foreground, the magic raises the refusal below the cell: said there only
                self.widget.refused(self.error_message() if self._poller is not None else None)
            return
        store = self._open()
        run = store.get_run(self.run_id)
        graph = store.get_graph(self.run_id)
        self._count_elements(run, graph)
        tails = self._read_output(store, self.run_id)
        self.widget.show(run, graph, self._sizes, output=tails.by_task)

    def error_message(self) -> str:
        """Why the run was refused or failed to drive, in one line."""
        error = self.error
        return getattr(error, "message", None) or f"{type(error).__name__}: {error}"

    def cancel(self, by: CancelSource) -> None:
        from flyte_lab.engine.api import cancel_run

        if self.run_id is not None and not self.finished.is_set():
            cancel_run(self.run_id, by=by)

    def _open(self) -> Any:
        if self._store is None:
            from flyte_lab.engine.api import flyte_home
            from flyte_lab.store import RunStore

            self._store = RunStore.from_env(str(flyte_home()))
        return self._store

    def _read_output(self, store: Any, run_id: str) -> OutputTails:
        """What the run's tasks printed since the last poll, read on while a page comes back full."""
        from flyte_lab.store.task_output import READ_LIMIT

        if self._tails is None or self._tails.run_id != run_id:
            self._tails = OutputTails(run_id)
        while True:
            page = store.task_output(run_id, since=self._tails.since)
            self._tails.add(page)
            if len(page["lines"]) < READ_LIMIT:
                return self._tails

    def _count_elements(self, run: Mapping[str, Any], graph: Mapping[str, Any]) -> None:
        """Element counts of map-over tasks, kept once found (a manifest, once stored, does not change)."""
        if self._list_length is None:
            from flyte_lab.engine.api import flyte_home

            self._list_length = manifest_lengths(str(flyte_home()))
        self._sizes = element_counts(run, graph, self._list_length, self._sizes)



