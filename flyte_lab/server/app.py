"""The `flyte_lab` Jupyter server extension: the route table of `handlers.ROUTES` and one launcher."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Unicode

from flyte_lab.server.handlers import ROUTES
from flyte_lab.server.launcher import Launcher
from flyte_lab.server.renames import follow_renames


class FlyteLabApp(ExtensionApp):
    name = "flyte_lab"
    load_other_extensions = True

    dashboard_url = Unicode("http://127.0.0.1:5006", config=True,
                            help="Where `flyte-lab dashboard` serves; the sidebar links a run to .../run?id=ID")

    fork_runs = Bool(True, config=True,
                     help="Start each run as a fork of a process that imported the engine once (the launch "
                          "template); off: each run starts a new interpreter, ~1.5 s slower")

    def initialize_settings(self) -> None:
        from flyte_lab.private_process import hide_memory

        # runs launched from the sidebar take their `--env K=$NAME` secrets from this server's environment
        hide_memory()
        self.launcher = Launcher(self.log, fork_runs=self.fork_runs)
        self.settings.update({"flyte_lab_launcher": self.launcher, "flyte_lab_dashboard_url": self.dashboard_url})
        follow_renames(self.serverapp, self.log)

    def initialize_handlers(self) -> None:
        self.handlers.extend(ROUTES)

    async def _start_jupyter_server_extension(self, serverapp: object) -> None:
        # runs once the event loop has started, after the server's sockets are bound: a readiness signal
        self.log.info("flyte_lab: REST API ready at %sflyte-lab/api", getattr(serverapp, "base_url", "/"))

    async def stop_extension(self) -> None:
        from flyte_lab.store.shared import close_shared_stores

        # runs are their own processes and outlive the server on purpose: end the launch template, forget the runs
        self.launcher.close()
        close_shared_stores()

