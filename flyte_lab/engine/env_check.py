"""Remote workers checked against the driver's environment before a run submits anything to them.

A `tcp://` or `k8s` worker with another Python, another flyte_lab or another version of a package the notebook
imports fails late and obscurely, or computes with other code without a word. Each worker is asked once (one
`client.run`) for the versions of the same names the driver resolves: Python (major.minor), flyte_lab, the
packages a task runs on (papermill, ipykernel, cloudpickle, distributed) and every top-level package the setup
cells and task bodies import, as `importlib.metadata` resolves them to distributions. A difference refuses the
run (`EnvironmentMismatch`, one line per package naming both versions and the workers) unless the user allows
it, and then the run records the differences. `flyte-lab doctor --cluster` prints the same comparison.

A worker that was not there to be asked (every `k8s` worker: they start with the run; a `tcp://` worker that
joined later) checks itself: each attempt on a remote cluster carries the driver's versions (`expected_env`) and
the worker compares its own (`attempt_mismatch`, once per worker process) before it starts a kernel.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flyte_lab.errors import UserInputError
from flyte_lab.graph.model import Workflow

PYTHON = "python"
ALWAYS = ("flyte_lab", "papermill", "ipykernel", "cloudpickle", "distributed")  # what every task runs on


class EnvironmentMismatch(UserInputError):
    """A worker's Python or package versions differ from the driver's."""


@dataclass(frozen=True)
class Difference:
    name: str  # a package's import name, or "python"
    here: str | None  # the driver's version (None: not installed)
    there: str | None
    workers: tuple[str, ...]

    def line(self) -> str:
        return (f"{self.name}: {self.here or 'not installed'} here, {self.there or 'not installed'} on "
                f"{', '.join(self.workers)}")

    def as_json(self) -> dict[str, Any]:
        return {"package": self.name, "driver": self.here, "worker": self.there, "workers": list(self.workers)}


def imported_packages(wf: Workflow) -> list[str]:
    """Top-level import names of the setup cells and task bodies, stdlib and relative imports left out."""
    names: list[str] = []
    sources = [s.source for s in wf.setup] + [t.body for t in wf.tasks.values()]
    for source in sources:
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue  # validation reports it
        for node in ast.walk(tree):
            found = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in found:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in names:
                    names.append(top)
    return names


def compared_names(wf: Workflow | None) -> list[str]:
    names = [PYTHON, *ALWAYS]
    for name in imported_packages(wf) if wf is not None else []:
        if name not in names:
            names.append(name)
    return names


def versions(names: Iterable[str]) -> dict[str, str | None]:
    """This process's version of each name: Python as major.minor, a package by the distribution that provides
    its import name (None when none does). Runs on the driver and, through `client.run`, on each worker."""
    import importlib.metadata as metadata
    import platform

    providers = metadata.packages_distributions()
    out: dict[str, str | None] = {}
    for name in names:
        if name == PYTHON:
            out[name] = ".".join(platform.python_version_tuple()[:2])
            continue
        version = None
        for dist in providers.get(name, []) or [name.replace("_", "-")]:
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out


def worker_versions(client: Any, names: list[str]) -> dict[str, dict[str, str | None]]:
    """Each worker's `versions`, by worker address (asked once, all workers at once)."""
    return dict(client.run(versions, names))


def differences(here: Mapping[str, str | None], workers: Mapping[str, Mapping[str, str | None]]) -> list[Difference]:
    """Every name whose version on some worker differs from the driver's, one `Difference` per version seen."""
    out: list[Difference] = []
    for name, mine in here.items():
        by_version: dict[str | None, list[str]] = {}
        for address, theirs in sorted(workers.items()):
            if theirs.get(name) != mine:
                by_version.setdefault(theirs.get(name), []).append(address)
        out += [Difference(name, mine, there, tuple(addresses)) for there, addresses in by_version.items()]
    return out


def check_workers(client: Any, wf: Workflow, cluster: str, allow: bool) -> list[Difference]:
    """Compare every worker with this process; refuse unless `allow` (then the differences are returned, for the
    run to record). A cluster without workers yet has nothing to compare."""
    names = compared_names(wf)
    found = differences(versions(names), worker_versions(client, names))
    if found and not allow:
        # one line per package, as `doctor` prints them
        raise EnvironmentMismatch("\n".join([
            f"--cluster {cluster}: the workers' environment differs from this one (install the same versions, "
            "or run anyway with --allow-env-mismatch):", *(f"  {d.line()}" for d in found)]))
    return found


@functools.lru_cache(maxsize=8)
def _own_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return versions(names)


def attempt_mismatch(expected: Mapping[str, Any] | None, worker: str) -> tuple[list[Difference], bool] | None:
    """In a worker: how this process differs from the driver's versions an attempt carries (`{"versions",
    "allow"}`), and whether the run allows it; None when it does not differ (or no versions came)."""
    if not expected or not expected.get("versions"):
        return None
    here: dict[str, str | None] = dict(expected["versions"])
    found = differences(here, {worker: _own_versions(tuple(here))})
    return (found, bool(expected.get("allow"))) if found else None


def expected_env(wf: Workflow, allow: bool) -> dict[str, Any]:
    """What each attempt of a remote cluster carries for `attempt_mismatch`."""
    return {"versions": versions(compared_names(wf)), "allow": allow}
