"""The `flyte_lab` Jupyter server extension: the route table of `handlers.ROUTES` and one launcher."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Unicode

from flyte_lab.server import dashboard
from flyte_lab.server.handlers import ROUTES
from flyte_lab.server.launcher import Launcher
from flyte_lab.server.renames import follow_renames


class FlyteLabApp(ExtensionApp):
    name = "flyte_lab"
    load_other_extensions = True

    dashboard_url = Unicode("", config=True,
                            help="Another dashboard for the sidebar's links (e.g. a `flyte-lab dashboard` at "
                                 "http://HOST:PORT; a run links to .../run?id=ID); empty: the one this server "
                                 "serves at {base_url}flyte-lab/dashboard")

    fork_runs = Bool(True, config=True,
                     help="Start each run as a fork of a process that imported the engine once (the launch "
                          "template); off: each run starts a new interpreter, ~1.5 s slower")

    def initialize_settings(self) -> None:
        from flyte_lab.private_process import hide_memory

        # runs launched from the sidebar take their `--env K=$NAME` secrets from this server's environment
        hide_memory()
        self.launcher = Launcher(self.log, fork_runs=self.fork_runs)
        assert self.serverapp is not None  # set before the extension's settings are made
        mounted = url_path_join(self.serverapp.base_url, dashboard.PATH)
        self.dashboard = dashboard.MountedDashboard(mounted)
        self.settings.update({"flyte_lab_launcher": self.launcher, "flyte_lab_dashboard": self.dashboard,
                              "flyte_lab_dashboard_url": self.dashboard_url or mounted})
        follow_renames(self.serverapp, self.log)

    def initialize_handlers(self) -> None:
        self.handlers.extend(ROUTES)
        self.handlers.extend(dashboard.ROUTES)

    async def _start_jupyter_server_extension(self, serverapp: object) -> None:
        # runs once the event loop has started, after the server's sockets are bound: a readiness signal
        self.log.info("flyte_lab: REST API ready at %sflyte-lab/api", getattr(serverapp, "base_url", "/"))

    async def stop_extension(self) -> None:
        from flyte_lab.store.shared import close_shared_stores

        # runs are their own processes and outlive the server on purpose: end the launch template, forget the runs
        self.launcher.close()
        self.dashboard.stop()
        close_shared_stores()

