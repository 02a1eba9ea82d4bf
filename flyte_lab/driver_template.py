"""What flyte_lab's two driver templates share (the Jupyter server's launch template, `server/launch_template.py`,
and the shared executor's template for `flyte-lab run`, `cli/warm_driver.py`): the imports a driver needs, made
once before any fork; reaping the drivers they fork; what a fork must redo.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

from flyte_lab.engine.worker.kernel_template import reaped

# what a run imports before and while it is recorded and driven, on the shared executor or a cluster of its own
# (found by listing `sys.modules` at the end of a two-task run)
RUN_MODULES = (
    "flyte_lab.engine.api", "flyte_lab.engine.driver", "flyte_lab.engine.clusters", "flyte_lab.engine.kept_cluster",
    "flyte_lab.engine.shared_executor", "flyte_lab.engine.task_notebook", "flyte_lab.engine.attempt_spec",
    "flyte_lab.engine.worker.run_attempt", "flyte_lab.engine.worker.kernels", "flyte_lab.engine.worker.kernelspecs",
    "flyte_lab.engine.worker.local_worker", "flyte_lab.engine.worker.files", "flyte_lab.graph.validate",
    "flyte_lab.k8s.autoscaler", "flyte_lab.store.run_store", "sqlalchemy.dialects.sqlite", "sqlite3",
    "distributed.client", "distributed.security", "distributed.comm.tcp",
    "distributed.deploy.local", "distributed.scheduler", "distributed.worker", "distributed.nanny",
    "distributed.http.scheduler.prometheus", "distributed.http.worker.prometheus", "distributed.http.health",
    "distributed.http.statics", "distributed.http.scheduler.info", "distributed.http.scheduler.json",
    "distributed.diagnostics.websocket", "tornado.platform.asyncio", "multiprocessing.managers",
    "multiprocessing.shared_memory", "papermill.execute", "nbclient.client", "jupyter_client.manager",
    "jupyter_client.kernelspec", "nbformat", "ipykernel.kernelspec", "IPython.core.interactiveshell", "http.server",
)


def preload(extra: tuple[str, ...] = ()) -> str | None:
    """Import what a driver needs (and `extra`); why forking is unsafe afterwards, or None."""
    from flyte_lab.engine.worker.kernel_template import unsafe_reason
    from flyte_lab.import_costs import decline_unused_imports

    decline_unused_imports()  # as in the CLI's driver: this process is one of flyte_lab's own drivers
    for name in (*RUN_MODULES, *extra):
        importlib.import_module(name)
        reason = unsafe_reason()
        if reason:
            return f"importing `{name}`: {reason}"
    gc.collect()
    gc.freeze()  # objects made so far are never written by the collector: fewer copy-on-write pages per fork
    return None


def reap_children(*_: Any) -> None:
    """SIGCHLD: collect every driver that ended (forked drivers are the template's children: no zombies)."""
    for _pid in reaped():
        pass


def reseed() -> None:
    """In a fork: `random` reseeds itself (os.register_at_fork); numpy's global generator does not."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
