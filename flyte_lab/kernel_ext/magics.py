"""`%%flyte_setup`, `%%flyte_task` and `%flyte_graph`: the notebook language in a live kernel.

A task cell runs like a normal cell, framed by checks: its inputs' values in
the user namespace are checked against the header's types before the body
runs, its outputs after. Every failure is a `UsageError` worded like the
static diagnostics, and a body that raised also ends in a `UsageError`, so
that Jupyter's "Run All" stops there instead of feeding later tasks.
"""

from __future__ import annotations

import importlib
import os
import shlex
import types
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from flyte_lab.errors import FlyteLabError, HeaderError
from flyte_lab.graph.header import TASK_MAGIC, parse_header
from flyte_lab.graph.model import HeaderSpec
from flyte_lab.kernel_ext.runtime_types import check_value, type_error_message

# Magics classes that `%load_ext flyte_lab` installs, as "module:Class". A new
# magic (e.g. `%flyte_run`) adds its own entry; modules import only at load time.
MAGIC_CLASSES: list[str] = ["flyte_lab.kernel_ext.magics:FlyteMagics"]


def register(ipython: Any) -> None:
    """Install every class of `MAGIC_CLASSES` into `ipython` (called by `load_ipython_extension`)."""
    for spec in MAGIC_CLASSES:
        module_name, _, class_name = spec.partition(":")
        ipython.register_magics(getattr(importlib.import_module(module_name), class_name))


@magics_class
class FlyteMagics(Magics):
    """The setup, task and graph magics of DESIGN.md section 1."""

    @property
    def _shell(self) -> InteractiveShell:
        # Magics.shell is Optional for IPython's own reasons; registered magics always have one
        assert self.shell is not None
        return self.shell

    @cell_magic
    def flyte_setup(self, line: str, cell: str) -> None:
        """Shared code (imports, helpers, schemas): run as is, in the user namespace."""
        # run_cell rather than exec, so IPython syntax (`%matplotlib`, `!pip`) works here too
        result = self._shell.run_cell(cell)
        if not result.success:
            raise UsageError(f"the %%flyte_setup cell failed with {_error_name(result)} (traceback above)")

    @cell_magic
    def flyte_task(self, line: str, cell: str) -> None:
        """Check the inputs, run the body, check the outputs."""
        # IPython splits the cell after the magic's first line; a header continued with `\`
        # has its other lines at the top of `cell`, so rebuild the cell as written
        source = f"{TASK_MAGIC} {line}\n{cell}"
        try:
            spec = parse_header(source)
        except HeaderError as exc:
            raise UsageError(exc.message) from None
        lines = source.split("\n")
        # the header goes back in as comments so that traceback line numbers match the cell's
        body = "\n".join([f"# {head}" for head in lines[:spec.header_lines]] + lines[spec.header_lines:])
        ns = self._shell.user_ns
        # resolve every type first: a missing import fails before anything runs
        in_types = {name: self._evaluate(spec.name, "input", name, text) for name, text, _, _ in spec.inputs}
        out_types = {name: self._evaluate(spec.name, "output", name, text) for name, text in spec.outputs}
        values: dict[str, Any] = {}
        for name, text, has_default, default in spec.inputs:
            mapped = spec.options.map_over == name
            if name in ns:
                value = ns[name]
            elif has_default:
                value = default
            else:
                shown = f"list[{text}]" if mapped else text
                raise UsageError(f"task `{spec.name}`: input `{name}: {shown}` is not defined in this "
                                 "kernel; run the task that produces it or set it")
            # a --map-over input is fed the list of its elements
            annotation: Any = types.GenericAlias(list, (in_types[name],)) if mapped else in_types[name]
            reason = check_value(value, annotation, name)
            if reason:
                declared = f"list[{text}]" if mapped else text
                raise UsageError(type_error_message(spec.name, "input", name, declared, reason))
            values[name] = value
        ns.update(values)  # defaults land in the kernel only once every input passed
        if spec.options.map_over:
            self._run_mapped(spec, body, out_types)
        else:
            self._run_body(spec, body, out_types, "")

    @line_magic
    def flyte_graph(self, line: str) -> None:
        """`%flyte_graph [NOTEBOOK]`: the validated graph (as saved on disk) and its diagnostics."""
        from IPython.display import HTML, display

        from flyte_lab.graph.validate import validate_notebook
        from flyte_lab.kernel_ext.graph_render import render_html

        try:
            args = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%flyte_graph: cannot read `{line}`: {exc}") from None
        if len(args) > 1:
            raise UsageError("usage: %flyte_graph [NOTEBOOK]  (one path, default: this notebook)")
        path = args[0] if args else self._current_notebook()
        if not os.path.exists(path):
            raise UsageError(f"%flyte_graph: no notebook at `{path}`")
        try:
            wf = validate_notebook(path)
        except FlyteLabError as exc:
            raise UsageError(exc.message) from None
        display(HTML(render_html(wf)))

    # -- helpers -----------------------------------------------------------------------------

    def _evaluate(self, task: str, role: str, name: str, text: str) -> Any:
        """The real type object of an annotation, for the run-time check.

        The static graph resolves names without importing anything; here the
        values are live, so the annotation is evaluated in the user's own
        namespace, where the %%flyte_setup cells put its imports.
        """
        try:
            annotation = eval(text, self._shell.user_ns)  # noqa: S307 - the user's own header, in their own kernel
            if isinstance(annotation, str):  # a forward reference written as a string
                annotation = eval(annotation, self._shell.user_ns)  # noqa: S307 - same
        except NameError as exc:
            missing = exc.name or text
            raise UsageError(f"unknown type name `{missing}` in {role} `{name}` of task `{task}`; run the "
                             "%%flyte_setup cell that imports it") from None
        except Exception as exc:  # AttributeError, TypeError, ...: whatever the annotation does wrong
            raise UsageError(f"the type `{text}` of {role} `{name}` of task `{task}` does not evaluate in "
                             f"this kernel: {type(exc).__name__}: {exc}") from None
        return annotation

    def _run_body(self, spec: HeaderSpec, body: str, out_types: dict[str, Any], where: str) -> None:
        """Run the body once and check its outputs; `where` names the mapped element, if any."""
        ns = self._shell.user_ns
        # unbind the outputs first, so a stale value from an earlier run cannot pass for a new one
        previous = {name: ns.pop(name) for name in out_types if name in ns}
        result = self._shell.run_cell(body)
        if not result.success:
            for name, value in previous.items():
                ns.setdefault(name, value)  # outputs the body never reached keep their old value
            raise UsageError(f"task `{spec.name}`{where}: the body raised {_error_name(result)} (traceback "
                             "above); its outputs were not checked")
        for (name, text), annotation in zip(spec.outputs, out_types.values(), strict=True):
            if name not in ns:
                raise UsageError(f"task `{spec.name}`: output `{name}: {text}` was not assigned by the "
                                 f"body{where}")
            reason = check_value(ns[name], annotation, name)
            if reason:
                raise UsageError(type_error_message(spec.name, "output", name, text, reason) + where)

    def _run_mapped(self, spec: HeaderSpec, body: str, out_types: dict[str, Any]) -> None:
        """`--map-over X`: one body run per element; each output becomes the list of its values."""
        ns = self._shell.user_ns
        over = spec.options.map_over
        assert over is not None
        items = ns[over]
        gathered: dict[str, list[Any]] = {name: [] for name in out_types}
        previous = {name: ns[name] for name in out_types if name in ns}
        done = False
        try:
            for i, item in enumerate(items):
                ns[over] = item
                self._run_body(spec, body, out_types, f" (for `{over}[{i}]`)")
                for name in out_types:
                    gathered[name].append(ns[name])
            done = True
        finally:
            ns[over] = items  # the kernel keeps the list, as downstream tasks see it
            for name in out_types:
                if done:
                    ns[name] = gathered[name]
                elif name in previous:
                    ns[name] = previous[name]
                else:
                    ns.pop(name, None)

    def _current_notebook(self) -> str:
        """This kernel's notebook, from `__session__` (ipykernel) or `JPY_SESSION_NAME` (jupyter_server)."""
        session = self._shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        if not session:
            raise UsageError("%flyte_graph: this kernel does not know its notebook; pass the path: "
                             "%flyte_graph path/to/notebook.ipynb")
        session = str(session)
        if os.path.exists(session):
            return session
        # the session path may be relative to the server root; the kernel starts in the notebook's folder
        local = os.path.basename(session)
        if os.path.exists(local):
            return local
        raise UsageError(f"%flyte_graph: this kernel's notebook `{session}` is not found from "
                         f"{os.getcwd()}; pass the path: %flyte_graph path/to/notebook.ipynb")


def _error_name(result: Any) -> str:
    error = result.error_in_exec or result.error_before_exec
    return f"`{type(error).__name__}`" if error is not None else "an error"
