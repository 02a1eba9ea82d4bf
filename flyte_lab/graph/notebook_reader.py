"""Read a notebook file and sort its cells into setup, parameters, tasks and exploration."""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from flyte_lab.errors import NotebookReadError
from flyte_lab.graph.header import SETUP_MAGIC, TASK_MAGIC

CellKind = Literal["setup", "parameters", "task", "exploration", "markdown"]


@dataclass(frozen=True)
class Cell:
    index: int  # 1-based among all cells, markdown included
    kind: CellKind
    source: str


def read_notebook(path: str) -> Any:
    """nbformat's reading with every failure turned into one clear `NotebookReadError`."""
    import nbformat  # lazy: keeps `flyte-lab --help` fast

    if os.path.isdir(path):
        raise NotebookReadError(f"{path}: is a directory, not a notebook file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise NotebookReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise NotebookReadError(f"{path}: cannot read it: {exc.strerror}") from None
    if not raw.strip():
        raise NotebookReadError(f"{path}: the file is empty, not a notebook")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookReadError(f"{path}: not a notebook: the file is binary, not UTF-8 JSON text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            f"{path}: not a notebook: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict) or "nbformat" not in data:
        raise NotebookReadError(f"{path}: not a notebook: the JSON has no `nbformat` version field")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise NotebookReadError(f"{path}: unsupported notebook format version {major!r}; flyte_lab reads 3 and 4")
    try:
        # JSON is already parsed: convert and validate once, quietly
        with warnings.catch_warnings():  # nbformat warns about missing cell ids; not the user's problem
            warnings.simplefilter("ignore")
            if major == 4:
                # validated as plain data: the graph builder reads cells by key, no NotebookNode needed
                nbformat.validate(data)
                nb = data
            else:
                nb = nbformat.convert(nbformat.from_dict(data), 4)
                nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", ()))
        raise NotebookReadError(
            f"{path}: not a valid notebook (nbformat schema){' at ' + where if where else ''}: {_short(exc)}"
        ) from None
    except Exception as exc:  # nbformat raises assorted errors for malformed documents
        raise NotebookReadError(f"{path}: not a valid notebook: {_short(exc)}") from None
    return nb


def _short(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def classify(nb: Any) -> list[Cell]:
    cells = []
    for i, cell in enumerate(nb["cells"], start=1):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] != "code":
            cells.append(Cell(i, "markdown", source))
            continue
        first = source.lstrip("\n").split("\n", 1)[0].strip()
        tags = cell.get("metadata", {}).get("tags", [])
        if first.startswith(TASK_MAGIC) and (len(first) == len(TASK_MAGIC) or first[len(TASK_MAGIC)].isspace()):
            cells.append(Cell(i, "task", source.lstrip("\n")))
        elif first == SETUP_MAGIC or first.startswith(SETUP_MAGIC + " "):
            body = source.lstrip("\n").split("\n", 1)
            cells.append(Cell(i, "setup", body[1] if len(body) > 1 else ""))
        elif "parameters" in tags:
            cells.append(Cell(i, "parameters", source))
        else:
            cells.append(Cell(i, "exploration", source))
    return cells


def kernel_name(nb: Any) -> str:
    return nb.get("metadata", {}).get("kernelspec", {}).get("name") or "python3"


_IPYTHON_SYNTAX = re.compile(r"^\s*[%!]|\?\s*$", re.MULTILINE)


def to_python(source: str) -> str:
    """IPython syntax (`%magic`, `!cmd`) to plain Python, only when the cell uses it."""
    if not _IPYTHON_SYNTAX.search(source):
        return source
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)
