"""`flyte-lab doctor [NOTEBOOK] [--cluster tcp://HOST:PORT] [--json]`: what this machine offers a run (Python,
flyte_lab, kernelspecs and whether their kernels fork, the store and artifact root) and, with `--cluster`, each
worker's versions against this one's, as a `tcp://` run compares them before it starts. Runs nothing; exit 1
when a worker differs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flyte_lab.errors import UserInputError


def doctor(args: argparse.Namespace) -> int:
    from flyte_lab.engine import env_check

    wf = None
    if args.notebook:
        from flyte_lab.graph.validate import validate_notebook

        wf = validate_notebook(args.notebook)
        if wf.errors:
            raise UserInputError(wf.errors[0].format(os.path.basename(args.notebook)))
    names = env_check.compared_names(wf)
    here = env_check.versions(names)
    report: dict[str, Any] = {"machine": _machine(), "versions": here}
    found: list[env_check.Difference] = []
    if args.cluster:
        workers = _worker_versions(args.cluster, names)
        report["workers"] = workers
        found = env_check.differences(here, workers)
        report["differences"] = [d.as_json() for d in found]
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print(report, names)
    return 1 if found else 0


def _machine() -> dict[str, Any]:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    from flyte_lab.engine.api import flyte_home
    from flyte_lab.engine.artifacts import root_url_from_env
    from flyte_lab.engine.worker.kernelspecs import launch_of

    home = flyte_home(create=False)
    kernels = {}
    for name, found in sorted(KernelSpecManager().get_all_specs().items()):
        launch = launch_of(KernelSpec(resource_dir=found["resource_dir"], **found["spec"]))
        kernels[name] = {"argv": found["spec"].get("argv", []),
                         "forked": not isinstance(launch, str),
                         "why_not_forked": launch if isinstance(launch, str) else None}
    return {"python": sys.executable, "flyte_lab_home": str(home),
            "store": os.environ.get("FLYTE_LAB_DB_URL") or str(home / "store.db"),
            "artifacts": root_url_from_env(str(home)), "kernelspecs": kernels,
            "fork": hasattr(os, "fork") and sys.platform == "linux"}


def _worker_versions(cluster: str, names: list[str]) -> dict[str, dict[str, str | None]]:
    if not cluster.startswith("tcp://"):
        raise UserInputError(f"--cluster {cluster}: doctor compares a running Dask cluster's workers: give tcp://HOST:PORT")
    from distributed import Client

    from flyte_lab.engine.env_check import worker_versions

    try:
        client = Client(cluster, timeout=10, set_as_default=False)
    except OSError as exc:
        raise UserInputError(f"--cluster {cluster}: cannot reach a Dask scheduler there ({exc})") from None
    with client:
        return worker_versions(client, names)


def _print(report: dict[str, Any], names: list[str]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from flyte_lab.cli.report import make_console

    console = make_console()
    machine = report["machine"]
    for key in ("python", "flyte_lab_home", "store", "artifacts"):
        console.print(Text(f"{key}: {machine[key]}"))
    for name, kernel in machine["kernelspecs"].items():
        how = "forked from a template" if kernel["forked"] else f"started as processes: {kernel['why_not_forked']}"
        console.print(Text(f"kernelspec {name}: {how}"))
    workers: dict[str, dict[str, str | None]] = report.get("workers", {})
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("package", no_wrap=True)
    table.add_column("here", no_wrap=True)
    for address in workers:
        table.add_column(address, no_wrap=True)
    for name in names:
        mine = report["versions"][name]
        cells = [Text(str(theirs.get(name) or "-"), style="bold red" if theirs.get(name) != mine else "")
                 for theirs in workers.values()]
        table.add_row(Text(name), Text(str(mine or "-")), *cells)
    console.print(Text(""))
    console.print(table)
    if "differences" in report:
        differences = report["differences"]
        console.print(Text(f"{len(differences)} difference(s): a run on this cluster is refused without "
                           "--allow-env-mismatch" if differences else "every worker matches this environment"))
