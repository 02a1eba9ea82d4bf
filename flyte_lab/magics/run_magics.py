"""`%flyte_run`, `%flyte_runs`, `%flyte_load` and `%flyte_debug`: runs seen from a kernel, read from the run store."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class

from flyte_lab.errors import FlyteLabError
from flyte_lab.graph.selection import add_arguments as selection_arguments
from flyte_lab.graph.selection import launch_options
from flyte_lab.kernel_ext.notebook_path import kernel_notebook, saved_note
from flyte_lab.statuses import CancelSource, RunStatus


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().strip()}\n%{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:  # `-h`
        raise UsageError(self.format_help())


def _parse(parser: argparse.ArgumentParser, line: str) -> argparse.Namespace:
    try:
        return parser.parse_args(shlex.split(line))
    except ValueError as exc:
        raise UsageError(f"%{parser.prog}: cannot read `{line}`: {exc}") from None


def _run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flyte_run", add_help=True,
                description="Run a notebook (default: this one, as saved) and watch it live.")
    p.add_argument("notebook", nargs="?")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--cluster", default="local")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--background", action="store_true", help="return at once; the widget keeps updating")
    selection_arguments(p)  # `flyte-lab run`'s --only/--from/--to/--reuse/--allow-changed
    return p


def _runs_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flyte_runs", description="Recent runs, newest first.")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", default=None, choices=[s.value for s in RunStatus])
    p.add_argument("--notebook", default=None, help="only runs of this notebook")
    return p


def _open_store(run_id: str | None = None) -> Any:
    """The run store, created by nothing here: None when no run was ever recorded, or for reading `run_id` a
    UsageError."""
    from flyte_lab.errors import NoStore, RunNotFound
    from flyte_lab.store import RunStore

    if run_id is None:
        try:
            return RunStore.from_env(create=False)
        except NoStore:
            return None
    try:
        return RunStore.open_existing(run_id, starts_one="`%flyte_run`")
    except RunNotFound as exc:
        raise UsageError(exc.message) from None


@magics_class
class RunMagics(Magics):
    @property
    def _shell(self) -> InteractiveShell:
        assert self.shell is not None
        return self.shell

    @line_magic
    def flyte_run(self, line: str) -> Any:
        """`%flyte_run [NOTEBOOK] [-p NAME=VALUE]... [--cluster ...] [--workers N] [--no-cache] [--background]
        [--only TASK[,TASK...] | --from TASK | --to TASK] [--reuse RUN_ID [--allow-changed]]`"""
        from IPython.display import display

        from flyte_lab.graph.params import split_params
        from flyte_lab.kernel_ext.run_follow import RunFollower

        args = _parse(_run_parser(), line)
        path = args.notebook or kernel_notebook(self._shell.user_ns, "flyte_run")
        if not os.path.isfile(path):
            raise UsageError(f"%flyte_run: no notebook at `{path}`")
        try:
            params = split_params(args.param)
            partial = launch_options(args)
        except FlyteLabError as exc:
            raise UsageError(exc.message) from None
        follower = RunFollower(path, params, saved_note(path), cluster=args.cluster, workers=args.workers,
                               use_cache=not args.no_cache, launch=partial)
        display(follower.widget.box)
        follower.start()
        if args.background:
            follower.follow_in_background()
            return follower
        try:
            follower.follow()
        except KeyboardInterrupt:
            follower.cancel(CancelSource.INTERRUPT)  # the kernel was interrupted (Ctrl-C's twin)
            follower.wait()
            follower.refresh()
            raise UsageError(f"interrupted: run {follower.run_id} was cancelled") from None
        if follower.error is not None:
            raise UsageError(follower.error_message())
        return None

    @line_magic
    def flyte_runs(self, line: str) -> None:
        """`%flyte_runs [--limit N] [--status S] [--notebook PATH]`: recent runs as a table."""
        import ipywidgets as w
        from IPython.display import display

        from flyte_lab.kernel_ext.run_widget import runs_html

        args = _parse(_runs_parser(), line)
        if args.limit < 1:
            raise UsageError(f"%flyte_runs: --limit must be at least 1, got {args.limit}")
        store = _open_store()
        rows: list[dict[str, Any]] = []
        if store is not None:
            with store:
                notebook = str(os.path.abspath(args.notebook)) if args.notebook else None
                rows = store.list_runs(limit=args.limit, status=args.status, notebook=notebook)
        display(w.HTML(value=runs_html(rows)))

    @line_magic
    def flyte_load(self, line: str) -> None:
        """`%flyte_load RUN_ID [TASK[.OUTPUT]]...`: a run's outputs into this kernel, typed (all tasks by default)."""
        words = shlex.split(line)
        if not words:
            raise UsageError("usage: %flyte_load RUN_ID [TASK[.OUTPUT]]...")
        run_id, wanted = words[0], words[1:]
        store = _open_store(run_id)
        with store:
            try:
                run = store.get_run(run_id)
                targets = self._load_targets(run, wanted)
                refs = {task: store.get_outputs(run["run_id"], task) for task in {t for t, _ in targets}}
            except FlyteLabError as exc:
                raise UsageError(exc.message) from None
        loaded = []
        for task, output in targets:
            outputs = refs[task]
            names = [output] if output else list(outputs)
            for name in names:
                if name not in outputs:
                    raise UsageError(f"task `{task}` of run {run['run_id']} has no output `{name}` recorded "
                                     f"(its outputs: {', '.join(outputs) or 'none'})")
                self._shell.user_ns[name] = self._decode(outputs[name])
                loaded.append(f"{name}: {outputs[name]['type']} (from {task})")
        print(f"loaded from run {run['run_id']}: " + (", ".join(loaded) or "nothing (no outputs recorded)"))

    @line_magic
    def flyte_debug(self, line: str) -> None:
        """`%flyte_debug RUN_ID TASK`: the inputs TASK's last attempt received, and where it failed."""
        from flyte_lab.kernel_ext.triage import load_inputs, read_attempt
        from flyte_lab.magics.kernel_state import setup_ran

        words = shlex.split(line)
        if len(words) != 2:
            raise UsageError("usage: %flyte_debug RUN_ID TASK")
        run_id, task = words
        store = _open_store(run_id)
        with store:
            try:
                record = read_attempt(store, run_id, task)
            except FlyteLabError as exc:
                raise UsageError(exc.message) from None
        if not setup_ran(self._shell) and record.setup:
            # the inputs' classes and the body's imports come from the setup cells, as in the attempt
            for _cell, source in record.setup:
                self._shell.run_cell_magic("flyte_setup", "", source)
            print(f"ran the {len(record.setup)} %%flyte_setup cell(s) of the attempt first")
        try:
            values = load_inputs(record, self._shell.user_ns)
        except FlyteLabError as exc:
            raise UsageError(f"cannot load the inputs of `{task}`: {exc.message}") from None
        self._shell.user_ns.update(values)
        print(record.summary())
        shown = ", ".join(f"{name} = {_short(value)}" for name, value in values.items()) or "none"
        print(f"inputs loaded into this kernel: {shown}")
        print(f"rerun the `{task}` cell (cell {record.cell}) to reproduce; once fixed there, the same cell checks "
              "its outputs as a run does")

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _load_targets(run: dict[str, Any], wanted: list[str]) -> list[tuple[str, str | None]]:
        tasks = run.get("tasks") or {}
        if not wanted:
            return [(name, None) for name, task in tasks.items() if task.get("outputs")]
        out: list[tuple[str, str | None]] = []
        for item in wanted:
            task, _, output = item.partition(".")
            if task not in tasks:
                raise UsageError(f"run {run['run_id']} has no task `{task}` (its tasks: {', '.join(tasks)})")
            out.append((task, output or None))
        return out

    def _decode(self, ref: dict[str, Any]) -> Any:
        """An output as its declared type: the type's text evaluated here, where the setup cells ran."""
        from flyte_lab.engine.api import flyte_home
        from flyte_lab.engine.artifacts import ArtifactStore
        from flyte_lab.engine.codecs.typed_json import ANY

        spec: Any = ANY
        try:
            spec = eval(ref["type"], self._shell.user_ns)  # noqa: S307 - a type the user wrote, in their kernel
        except Exception:  # the setup cells did not run here: plain decoding still gives the value
            spec = ANY
        try:
            # the user's own kernel, by their choice: the one place outside a task kernel that unpickles
            return ArtifactStore.from_env(str(flyte_home()), allow_pickle=True).get(ref["uri"], spec,
                                                                                    self._shell.user_ns)
        except FlyteLabError as exc:
            raise UsageError(f"cannot load {ref['uri']}: {exc.message}") from None


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:79] + "…"
