"""`flyte-lab validate`: print diagnostics like a compiler, or the graph as JSON."""

from __future__ import annotations

import argparse
import json

from flyte_lab.graph.params import split_params
from flyte_lab.graph.validate import graph_json, resolve_params, validate_notebook


def validate(args: argparse.Namespace) -> int:
    launch = split_params(args.param)
    wf = validate_notebook(args.notebook, cli_params=launch)
    if launch and not any(d.code == "bad-notebook" for d in wf.diagnostics):
        resolve_params(wf, launch)
    if args.json:
        print(json.dumps(graph_json(wf), indent=2))
    else:
        for diag in wf.diagnostics:
            print(diag.format(args.notebook))
        if any(d.code == "bad-notebook" for d in wf.diagnostics):
            return 2  # one line says it all
        errors, warnings = len(wf.errors), len(wf.diagnostics) - len(wf.errors)
        summary = f"{args.notebook}: {len(wf.tasks)} tasks, {len(wf.edges)} edges"
        if errors or warnings:
            summary += f", {errors} error(s), {warnings} warning(s)"
        else:
            summary += ", valid"
        print(summary)
    return 2 if wf.errors else 0
