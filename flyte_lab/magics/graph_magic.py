"""`%flyte_graph [NOTEBOOK]`: the validated graph of a notebook as saved on disk."""

from __future__ import annotations

import os
import shlex
from html import escape

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from flyte_lab.errors import FlyteLabError
from flyte_lab.kernel_ext.notebook_path import kernel_notebook, saved_note


@magics_class
class GraphMagics(Magics):
    @line_magic
    def flyte_graph(self, line: str) -> None:
        """`%flyte_graph [NOTEBOOK]`: the graph (as saved on disk: say which file and when) and its diagnostics."""
        from IPython.display import HTML, display

        from flyte_lab.graph.validate import validate_notebook
        from flyte_lab.presentation.graph_render import render_html

        assert self.shell is not None
        try:
            args = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%flyte_graph: cannot read `{line}`: {exc}") from None
        if len(args) > 1:
            raise UsageError("usage: %flyte_graph [NOTEBOOK]  (one path, default: this notebook)")
        path = args[0] if args else kernel_notebook(self.shell.user_ns, "flyte_graph")
        if not os.path.exists(path):
            raise UsageError(f"%flyte_graph: no notebook at `{path}`")
        try:
            wf = validate_notebook(path)
        except FlyteLabError as exc:
            raise UsageError(exc.message) from None
        note = (f'<div class="flyte-graph-source" style="color:#555;margin-bottom:4px">{escape(saved_note(path))}'
                " (unsaved edits are not in this picture)</div>")
        display(HTML(note + render_html(wf)))
