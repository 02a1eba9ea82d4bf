"""flyte_lab's papermill engine, registered with papermill's engine registry when this module is imported.

It is papermill's nbclient engine, but
- it writes the executed notebook at the end, or when execution was cut short (papermill itself writes
  after a successful run and after a cell error, but not when the kernel was killed: timeout, cancel, crash),
  and while a longer attempt runs, at most every `LIVE_SAVE_S` once it has run that long, so opening it mid-run
  shows the cells done so far; a short task pays no write on its critical path;
- every output a cell makes also goes to the attempt's live output (`live_output.LiveOutput`) as it comes;
- a kernel that dies while starting, before any cell, is replaced (`START_TRIES`);
- each cell of a batch's element (tagged `flyte-element-I`) tells `on_element` which element runs (its live output
  and its `--timeout` budget are the element's own);
- its client takes the notebook's `language_info` from the kernel_info reply the kernel gave to be ready
  (`kernels.FastReadyClient`) instead of asking again after the cells: one round trip less per task.
Only a worker imports this module (`run_attempt._execute`): papermill is not a cheap import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.iorw import write_ipynb
from papermill.log import logger

from flyte_lab.engine.task_notebook import ELEMENT_TAG

log = logging.getLogger(__name__)
ENGINE_NAME = "flyte_lab"
LIVE_SAVE_S = 2.0
# A kernel that dies before answering its first kernel_info ran none of the task's code (e.g. one of the ports
# chosen for it was taken by another process before it could bind them): the attempt starts another, silently,
# up to this many kernels in all. A kernel that dies once the cells began is the attempt's failure, as ever.
START_TRIES = 3
DIED_STARTING = "Kernel died before replying to kernel_info"  # `kernels.FastReadyClient.wait_for_ready`


class LiveSave(NotebookExecutionManager):  # type: ignore[misc]
    """papermill's execution manager, saving during execution only to `live_url` (an attempt's executed notebook)
    and only every `LIVE_SAVE_S` from `LIVE_SAVE_S` after the start; the live output is told of the first save."""

    def __init__(self, *args: Any, live_url: str | None = None, live: Any = None,
                 on_element: Callable[[int], None] | None = None, **kwargs: Any) -> None:
        self.live_url, self.live, self.on_element = live_url, live, on_element
        self._began = self._saved = time.monotonic()
        self._told = False
        super().__init__(*args, **kwargs)

    def save(self, **kwargs: Any) -> None:
        self.last_save_time = self.now()
        now = time.monotonic()
        if self.live_url is None or now - self._began < LIVE_SAVE_S or now - self._saved < LIVE_SAVE_S:
            return
        from flyte_lab.engine.worker import files

        self._saved = now
        try:
            files.write_bytes(self.live_url, nbformat_bytes(self.nb))
        except Exception as exc:
            # a mid-run save is only a view: a folder gone unwritable, or S3 refusing, must not fail a working
            # task nor hide its own error; the final write says what is wrong, if anything still is
            log.warning("flyte_lab: the executed notebook %s could not be saved mid-run (%s: %s); not retried "
                        "before the attempt ends", self.live_url, type(exc).__name__, exc)
            self.live_url = None
            return
        if not self._told and self.live is not None:
            self._told = True
            self.live.note(notebook=self.live_url)

    def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        if self.on_element is not None:
            for tag in cell.metadata.get("tags", ()):
                if tag.startswith(ELEMENT_TAG):
                    self.on_element(int(tag.removeprefix(ELEMENT_TAG)))
        super().cell_start(cell, cell_index, **kwargs)

    def autosave_cell(self) -> None:
        self.save()  # a long cell that prints: its outputs so far, at the same pace


def nbformat_bytes(nb: Any) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode()


class ReadyInfoClient(PapermillNotebookClient):  # type: ignore[misc]
    """papermill's client (`PapermillNotebookClient.execute`), reusing the kernel_info reply of the readiness check."""

    live: Any = None  # the attempt's `LiveOutput`, set by the engine

    def process_message(self, *args: Any, **kwargs: Any) -> Any:
        output = super().process_message(*args, **kwargs)
        if output is not None and self.live is not None:
            self.live.add(output)
        return output

    def execute(self, **kwargs: Any) -> Any:
        for tries_left in reversed(range(START_TRIES)):
            self.reset_execution_trackers()
            started = False
            try:
                with self.setup_kernel(**kwargs):
                    started = True
                    self.papermill_execute_cells()
                    reply = getattr(self.kc, "kernel_info_reply", None) or self.wait_for_reply(self.kc.kernel_info())
                    self.nb.metadata["language_info"] = reply["content"]["language_info"]
                    self.set_widgets_metadata()
                return self.nb
            except RuntimeError as exc:
                # nbclient has shut that kernel down and forgotten it (`_async_cleanup_kernel`): a new one
                if started or tries_left == 0 or not str(exc).startswith(DIED_STARTING):
                    raise
        raise AssertionError("unreachable")


class FlyteLabEngine(NBClientEngine):  # type: ignore[misc]
    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = False, log_output: bool = False, autosave_cell_every: int = 0,
                         live_output: Any = None, live_url: str | None = None,
                         on_element: Callable[[int], None] | None = None, **kwargs: Any) -> Any:
        nb_man = LiveSave(nb, output_path=None, progress_bar=False, log_output=log_output, autosave_cell_every=0,
                          live_url=live_url, live=live_output, on_element=on_element)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        except BaseException:
            nb_man.notebook_complete()
            if output_path:
                write_ipynb(nb_man.nb, output_path)
            raise
        nb_man.notebook_complete()
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 start_timeout: float = 60, execution_timeout: float | None = None,
                                 **kwargs: Any) -> Any:
        # the rest are nbclient's own options (`run_attempt._execute`: kernel manager class, shutdown, save
        # requests) and papermill's stdout/stderr files
        kwargs.pop("input_path", None)
        client = ReadyInfoClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logger, log_output=log_output, **kwargs)
        client.live = getattr(nb_man, "live", None)
        return client.execute()


papermill_engines.register(ENGINE_NAME, FlyteLabEngine)  # once: a module is imported once per process
