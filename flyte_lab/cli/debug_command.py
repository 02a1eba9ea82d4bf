"""`flyte-lab debug RUN_ID TASK [-o NOTEBOOK]`: a notebook, ready to open, that reproduces a task's last attempt.

Its cells: the attempt's `%%flyte_setup` cells, `%flyte_debug RUN_ID TASK`
(which loads the inputs the attempt received and prints where it failed),
then the task's own cell, header and body as the attempt ran them, so its
line numbers are the original cell's and rerunning it applies the
`%%flyte_task` checks.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from flyte_lab.errors import UserInputError


def debug(args: argparse.Namespace) -> int:
    from flyte_lab.kernel_ext.triage import read_attempt
    from flyte_lab.store import RunStore

    with RunStore.open_existing(args.run_id) as store:
        record = read_attempt(store, args.run_id, args.task)
    source = Path(record.notebook)
    target = Path(args.output) if args.output else source.with_name(f"{source.stem}.debug-{record.task}.ipynb")
    if target.exists() and not args.force:
        raise UserInputError(f"{target} already exists; pass --force to overwrite it or -o to choose another path")
    if not target.parent.is_dir():
        raise UserInputError(f"cannot write {target}: no folder {target.parent}")
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    error = record.error or {}
    what = ": ".join(str(p) for p in (error.get("type"), error.get("message")) if p) or record.status
    nb.cells.append(new_markdown_cell(
        f"# Debugging task `{record.task}` of run `{record.run_id}`\n\n"
        f"Source notebook: `{record.notebook}` (cell {record.cell}). Attempt {record.number} of "
        f"{record.attempts}: **{what}** at {record.where()}.\n\n"
        "Run the cells in order: the setup, then `%flyte_debug` loads the inputs this attempt received, "
        "then the task cell reproduces it. Fix the task cell and rerun it until its outputs pass the checks, "
        "then carry the fix back to the source notebook."))
    nb.cells.append(new_code_cell("%load_ext flyte_lab"))
    for _cell, setup in record.setup:
        nb.cells.append(new_code_cell(f"%%flyte_setup\n{setup}"))
    nb.cells.append(new_code_cell(f"%flyte_debug {record.run_id} {record.task}"))
    nb.cells.append(new_code_cell(f"{record.header()}\n{record.body}"))
    nbformat.write(nb, str(target))
    os.chmod(target, 0o600)  # inputs are loaded by reference only, but the notebook names private paths
    print(record.summary())
    print(f"wrote {target}")
    print(f"open it: jupyter lab {target}")
    return 0
