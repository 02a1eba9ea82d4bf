"""Word an `undefined-name` found in a live kernel the way `flyte-lab validate` does.

The static check names the exploration cell that defines the name; in a
kernel the notebook as saved tells which cell that is (when the kernel can
find its notebook), else the kernel's own input history tells which
execution (`In [7]`) bound it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flyte_lab.errors import FlyteLabError
from flyte_lab.graph.scopes import analyse


def undefined_name_message(shell: Any, task: str, name: str) -> str:
    where = f"task `{task}` reads `{name}`"
    cells = _saved_cells(shell)
    for cell in cells:
        if cell.kind == "task" and cell.source.split("(", 1)[0].split()[-1:] == [task]:
            where = f"task `{task}` (cell {cell.index}) reads `{name}`"
    for cell in cells:
        if cell.kind == "parameters" and name in _bound(cell.source):
            return (f"{where}, which is set in the parameters cell; declare `{name}: TYPE` as an input of "
                    f"`{task}` to receive it")
    for cell in cells:
        if cell.kind == "exploration" and name in _bound(cell.source):
            return (f"{where}, which is defined only in exploration cell {cell.index}: that cell never runs "
                    f"in a pipeline; move it into a %%flyte_setup cell or declare `{name}` as an input")
    executed = _history_cell(shell, name)
    if executed is not None:
        return (f"{where}, which is defined only by an exploration cell (In [{executed}]): that cell never "
                f"runs in a pipeline; move it into a %%flyte_setup cell or declare `{name}` as an input")
    return (f"{where}, which is not an input, not defined in the body, not from a %%flyte_setup cell and not a "
            "builtin; declare it as an input or define it")


def _bound(source: str) -> set[str]:
    from flyte_lab.graph.notebook_reader import to_python

    try:
        return analyse(to_python(source)).bound
    except SyntaxError:
        return set()


def _saved_cells(shell: Any) -> list[Any]:
    """The cells of this kernel's notebook as saved, or [] when it cannot be found or read."""
    from IPython.core.error import UsageError

    from flyte_lab.graph.notebook_reader import classify, read_notebook
    from flyte_lab.kernel_ext.notebook_path import kernel_notebook

    with contextlib.suppress(UsageError, FlyteLabError, OSError):
        return classify(read_notebook(kernel_notebook(shell.user_ns, "flyte_task")))
    return []


def _history_cell(shell: Any, name: str) -> int | None:
    """The latest execution count whose input (not a flyte cell) bound `name`."""
    history = shell.user_ns.get("In")
    if not isinstance(history, list):
        return None
    for count in range(len(history) - 1, 0, -1):
        source = str(history[count])
        if "flyte_setup" in source.split("\n", 1)[0] or "flyte_task" in source.split("\n", 1)[0]:
            continue
        try:
            if name in analyse(source).bound:
                return count
        except SyntaxError:
            continue
    return None
