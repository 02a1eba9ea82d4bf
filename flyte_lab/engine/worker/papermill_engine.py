"""flyte_lab's papermill engine, registered with papermill's engine registry when this module is imported.

It is papermill's nbclient engine, but
- it writes the executed notebook once: at the end, or when execution was cut short. papermill itself writes
  after a successful run and after a cell error, but not when the kernel was killed (timeout, cancel, crash)
  unless it saves after every cell, a write per cell on the task's critical path;
- its client takes the notebook's `language_info` from the kernel_info reply the kernel gave to be ready
  (`kernels.FastReadyClient`) instead of asking again after the cells: one round trip less per task.
Only a worker imports this module (`run_attempt._execute`): papermill is not a cheap import.
"""

from __future__ import annotations

from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.iorw import write_ipynb
from papermill.log import logger

ENGINE_NAME = "flyte_lab"


class FinalSave(NotebookExecutionManager):  # type: ignore[misc]
    """papermill's execution manager, minus its saves during execution."""

    def save(self, **kwargs: Any) -> None:
        self.last_save_time = self.now()


class ReadyInfoClient(PapermillNotebookClient):  # type: ignore[misc]
    """papermill's client (`PapermillNotebookClient.execute`), reusing the kernel_info reply of the readiness check."""

    def execute(self, **kwargs: Any) -> Any:
        self.reset_execution_trackers()
        with self.setup_kernel(**kwargs):
            self.papermill_execute_cells()
            reply = getattr(self.kc, "kernel_info_reply", None) or self.wait_for_reply(self.kc.kernel_info())
            self.nb.metadata["language_info"] = reply["content"]["language_info"]
            self.set_widgets_metadata()
        return self.nb


class FlyteLabEngine(NBClientEngine):  # type: ignore[misc]
    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = False, log_output: bool = False, autosave_cell_every: int = 0,
                         **kwargs: Any) -> Any:
        nb_man = FinalSave(nb, output_path=None, progress_bar=False, log_output=log_output, autosave_cell_every=0)
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
        return ReadyInfoClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                               kernel_name=kernel_name, log=logger, log_output=log_output, **kwargs).execute()


papermill_engines.register(ENGINE_NAME, FlyteLabEngine)  # once: a module is imported once per process
