"""`flyte-lab`: one entry point; every `FlyteLabError` becomes one line and its exit code.

Imports stay lazy so `--help` and `validate` never load Dask or papermill.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from flyte_lab.errors import FlyteLabError
from flyte_lab.statuses import RunStatus


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, build: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "module:function" adding this sub-command's arguments on its first use: what it imports, others need not
        self._build = build

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        if self._build is not None:
            build, self._build = self._build, None
            _load(build)(self)
        return super().parse_known_args(*args, **kwargs)

    def error(self, message: str) -> Any:  # argparse's own errors also exit 2, in one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"flyte-lab: error: {message}\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    from flyte_lab.graph.selection import add_arguments as selection_arguments

    parser = _Parser(prog="flyte-lab", description="Typed notebook workflows on Dask.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def params(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a workflow input value (repeatable)")

    def shared_fs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--shared-fs", action="store_true",
                       help="with --cluster tcp://…: the local artifact folder is on a disk every worker mounts")

    p = sub.add_parser("validate", help="check a notebook's task graph without running it")
    p.add_argument("notebook")
    params(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.validate_command:validate")

    p = sub.add_parser("run", help="validate then run a notebook's tasks on Dask")
    p.add_argument("notebook")
    params(p)
    p.add_argument("--cluster", default="shared",
                   help="shared (default: your warm local executor) | local (a private one) | tcp://HOST:PORT | k8s")
    p.add_argument("--workers", type=int, default=None, help="most workers the local cluster adapts to")
    p.add_argument("--no-cache", action="store_true", help="do not look up cached task outputs")
    shared_fs(p)
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="with --cluster tcp://…: run even where the workers' package versions differ (recorded)")
    p.add_argument("--json", action="store_true")
    selection_arguments(p)
    p.set_defaults(handler="flyte_lab.cli.launch_commands:run")

    p = sub.add_parser("doctor", help="what this machine offers a run; with --cluster, the workers' versions "
                                      "against this environment's")
    p.add_argument("notebook", nargs="?", help="also compare the packages this notebook imports")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT", help="a running Dask cluster whose workers to compare")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.doctor_command:doctor")

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--notebook", metavar="NOTEBOOK",
                   help="only this notebook's runs (a notebook renamed in Jupyter keeps its runs)")
    p.add_argument("--status", choices=[str(s) for s in RunStatus], help="only runs in this state")
    p.set_defaults(handler="flyte_lab.cli.run_commands:runs")

    p = sub.add_parser("show", help="one run's tasks, attempts and errors")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.run_commands:show")

    p = sub.add_parser("outputs", help="one run's task outputs")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.run_commands:outputs")

    p = sub.add_parser("logs", help="what a run's tasks print, live (--follow) or after")
    p.add_argument("run_id")
    p.add_argument("task", nargs="?", default=None, help="only this task (default: every task, lines prefixed)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run (or TASK) has ended")
    p.set_defaults(handler="flyte_lab.cli.logs_command:logs")

    p = sub.add_parser("resume", help="finish a failed or interrupted run, reusing what succeeded")
    p.add_argument("run_id")
    p.add_argument("--cluster", default=None)
    p.add_argument("--workers", type=int, default=None)
    shared_fs(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.launch_commands:resume")

    p = sub.add_parser("cancel", help="stop a run from any process: kill its running tasks, release its locks")
    p.add_argument("run_id")
    p.add_argument("--no-wait", action="store_true", help="return once the cancel is requested")
    p.set_defaults(handler="flyte_lab.cli.launch_commands:cancel")

    # -- debug (kernel side: flyte_lab/kernel_ext/triage.py) --
    p = sub.add_parser("debug", help="write a notebook that reproduces a task's last attempt with its inputs")
    p.add_argument("run_id")
    p.add_argument("task")
    p.add_argument("-o", "--output", default=None,
                   help="where to write it (default: NOTEBOOK.debug-TASK.ipynb next to the run's notebook)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler="flyte_lab.cli.debug_command:debug")

    # -- dashboard (flyte_lab/dashboard, DESIGN.md section 3b) --
    from flyte_lab.cli.dashboard_command import add_arguments as dashboard_arguments

    p = sub.add_parser("dashboard", help="serve the web dashboard of runs (Panel): graph, timeline, drill-down")
    dashboard_arguments(p)
    p.set_defaults(handler="flyte_lab.cli.dashboard_command:dashboard")
    # -- end of dashboard --

    p = sub.add_parser("k8s-spec", help="print the dask-kubernetes manifests `--cluster k8s` would create")
    p.add_argument("notebook")
    p.set_defaults(handler="flyte_lab.cli.k8s_commands:k8s_spec")

    executor = sub.add_parser("executor", help="your warm local executor (the default `--cluster shared`)")
    esub = executor.add_subparsers(dest="executor_command", required=True, parser_class=_Parser)
    p = esub.add_parser("status", help="the executors running for this FLYTE_LAB_HOME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="flyte_lab.cli.executor_commands:status")
    p = esub.add_parser("stop", help="stop them (their kernels too); the next run starts a new one")
    p.set_defaults(handler="flyte_lab.cli.executor_commands:stop")

    # -- schedules (DESIGN.md section 3) -------------------------------------------------
    sub.choices["run"].add_argument("--notify", action="append", default=[], metavar="EVENT=URL",
                                    help="succeeded|failed|timed_out=http(s)://… or mailto:… (repeatable)")
    # its arguments come from the schedule spec (pydantic), loaded only when `schedule` is asked for
    sub.add_parser("schedule", help="run a notebook on a cron or fixed-rate schedule",
                   build="flyte_lab.cli.schedule_commands:add_arguments")
    p = sub.add_parser("scheduler", help="fire due schedules (long-running; --once fires what is due and exits)")
    p.add_argument("--once", action="store_true", help="fire what is due, wait for those runs, exit")
    p.add_argument("--now", help="ISO-8601 time to fire at instead of the clock (with --once)")
    p.set_defaults(handler="flyte_lab.cli.schedule_commands:scheduler")
    # -- end of schedules ------------------------------------------------------------------
    return parser


def _load(spec: str) -> Callable[..., Any]:
    """The function `module:name` names (a handler or a sub-command's arguments), imported when needed."""
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    from flyte_lab.import_costs import decline_unused_imports
    from flyte_lab.private_process import hide_memory

    hide_memory()  # `run`, `resume` and `scheduler` read secrets from this process's environment

    decline_unused_imports()
    args = _parser().parse_args(argv)
    if not args.debug:
        from flyte_lab.library_logs import quiet_in_this_process

        quiet_in_this_process()
    try:
        code: int = _load(args.handler)(args)
        return code
    except FlyteLabError as exc:
        if args.debug:
            raise
        print(f"flyte-lab: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `flyte-lab ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("flyte-lab: interrupted", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The `flyte-lab` process itself (`main` is for callers that go on running): a `run` is handed to a warm
    driver when the shared executor keeps one (`cli/warm_client.py`), else run here."""
    from flyte_lab.cli.warm_client import delegate
    from flyte_lab.private_process import hide_memory
    from flyte_lab.process_exit import exit_process

    hide_memory()  # first: this process holds the environment `--env` secrets come from, delegated or not
    code = delegate(sys.argv[1:])
    exit_process(main() if code is None else code)


if __name__ == "__main__":
    entry()
