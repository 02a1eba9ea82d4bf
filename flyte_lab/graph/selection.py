"""Which tasks a partial run executes (`--only`, `--from`, `--to`) and which it takes from an earlier run.

Pure: a task order and each task's upstream tasks in, task names out. `flyte-lab run` and `%flyte_run` take
the same options (`add_arguments`, `launch_options`), the REST API the same `Selection` as JSON; `engine/api.py`
runs `select_tasks` and reuses `needed_upstream`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flyte_lab.errors import SelectionRefused


@dataclass(frozen=True)
class Selection:
    only: tuple[str, ...] = ()
    from_task: str | None = None
    to_task: str | None = None

    @property
    def everything(self) -> bool:
        return not self.only and self.from_task is None and self.to_task is None

    def describe(self) -> str:
        """The options as a user would type them: `--from c --to d`, `--only c,d`."""
        if self.only:
            return f"--only {','.join(self.only)}"
        parts = [f"--from {self.from_task}"] if self.from_task else []
        parts += [f"--to {self.to_task}"] if self.to_task else []
        return " ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {"only": list(self.only), "from": self.from_task, "to": self.to_task}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Selection:
        data = data or {}
        return cls(tuple(data.get("only") or ()), data.get("from") or None, data.get("to") or None)

    @classmethod
    def parse(cls, only: str | Sequence[str] | None = None, from_task: str | None = None,
              to_task: str | None = None) -> Selection:
        """Option values as given (`--only a,b` or a list); refuses `--only` with `--from`/`--to` and an empty
        name, in one line naming the option."""
        names: list[str] = []
        if only is not None:
            for part in [only] if isinstance(only, str) else list(only):
                names += [n.strip() for n in str(part).split(",")]
            if not names or any(not n for n in names):
                raise SelectionRefused(f"--only {only!s}: expected task names separated by commas")
            if from_task is not None or to_task is not None:
                option = "--from" if from_task is not None else "--to"
                raise SelectionRefused(f"--only cannot be combined with {option}: --only names every task to run")
        for option, value in (("--from", from_task), ("--to", to_task)):
            if value is not None and not value.strip():
                raise SelectionRefused(f"{option}: expected a task name")
        return cls(tuple(dict.fromkeys(names)), from_task.strip() if from_task else None,
                   to_task.strip() if to_task else None)


def _closure(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _downstream_edges(order: Sequence[str], upstream: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    down: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        for up in upstream.get(name, ()):
            down.setdefault(up, []).append(name)
    return down


def select_tasks(order: Sequence[str], upstream: Mapping[str, Iterable[str]], sel: Selection) -> list[str]:
    """The tasks `sel` runs, in `order`; every task when nothing is selected. Unknown names and an empty
    selection are refused, naming the option and the task."""
    if sel.everything:
        return list(order)
    known = set(order)
    given = [("--only", n) for n in sel.only] + [(o, n) for o, n in (("--from", sel.from_task),
                                                                     ("--to", sel.to_task)) if n is not None]
    for option, name in given:
        if name not in known:
            raise SelectionRefused(f"{option} {name}: the notebook has no task `{name}` "
                                   f"(its tasks: {', '.join(order) or 'none'})")
    if sel.only:
        chosen = set(sel.only)
    else:
        chosen = set(known)
        if sel.from_task is not None:
            chosen &= _closure(sel.from_task, _downstream_edges(order, upstream))
        if sel.to_task is not None:
            chosen &= _closure(sel.to_task, upstream)
        if not chosen:
            raise SelectionRefused(f"{sel.describe()}: task `{sel.to_task}` is not downstream of `{sel.from_task}`, "
                                   "so no task lies between them")
    return [name for name in order if name in chosen]


def needed_upstream(order: Sequence[str], upstream: Mapping[str, Iterable[str]], selected: Iterable[str]) -> list[str]:
    """The unselected tasks the selected ones depend on, directly or not, in `order`: their outputs come from an
    earlier run. With them the run's tasks are closed upstream, so each can be checked as `resume` checks."""
    chosen = set(selected)
    needed: set[str] = set()
    for name in chosen:
        needed |= _closure(name, upstream)
    return [name for name in order if name in needed - chosen]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--only`, `--from`, `--to`, `--reuse`, `--allow-changed`: `flyte-lab run`'s and `%flyte_run`'s."""
    parser.add_argument("--only", metavar="TASK[,TASK...]", help="run just these tasks, on an earlier run's outputs")
    parser.add_argument("--from", dest="from_task", metavar="TASK", help="run TASK and everything downstream of it")
    parser.add_argument("--to", dest="to_task", metavar="TASK", help="run TASK and everything upstream of it")
    parser.add_argument("--reuse", metavar="RUN_ID",
                        help="take the unselected tasks' outputs from this run (default: the newest that fits)")
    parser.add_argument("--allow-changed", action="store_true",
                        help="with --reuse: take its outputs even of tasks whose code changed since")


def launch_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as `engine.api.run_notebook`'s keywords (`select`, `reuse`, `allow_changed`)."""
    return {"select": Selection.parse(args.only, args.from_task, args.to_task), "reuse": args.reuse,
            "allow_changed": args.allow_changed}
