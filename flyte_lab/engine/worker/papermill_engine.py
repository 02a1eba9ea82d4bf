"""flyte_lab's papermill engine, registered with papermill's engine registry when this module is imported.

It is papermill's nbclient engine, but it writes the executed notebook once: at the end, or when execution
was cut short. papermill itself writes after a successful run and after a cell error, but not when the
kernel was killed (timeout, cancel, crash) unless it saves after every cell, a write per cell on the task's
critical path. Only a worker imports this module (`run_attempt._execute`): papermill is not a cheap import.
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.iorw import write_ipynb

ENGINE_NAME = "flyte_lab"


class FinalSave(NotebookExecutionManager):  # type: ignore[misc]
    """papermill's execution manager, minus its saves during execution."""

    def save(self, **kwargs: Any) -> None:
        self.last_save_time = self.now()


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


papermill_engines.register(ENGINE_NAME, FlyteLabEngine)  # once: a module is imported once per process
