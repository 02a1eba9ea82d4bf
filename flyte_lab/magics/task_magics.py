"""`%%flyte_setup` and `%%flyte_task`: the notebook language in a live kernel.

A task cell runs like a normal cell, framed by checks: its inputs' values in
the user namespace are checked against the header's types before the body
runs, its outputs after. Every failure is a `UsageError` worded like the
static diagnostics, and a body that raised also ends in a `UsageError`, so
that Jupyter's "Run All" stops there instead of feeding later tasks.
"""

from __future__ import annotations

import types
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, magics_class

from flyte_lab.errors import HeaderError
from flyte_lab.graph.header import TASK_MAGIC, parse_header
from flyte_lab.graph.model import HeaderSpec
from flyte_lab.graph.scopes import analyse
from flyte_lab.graph.value_checks import check_value, type_error_message
from flyte_lab.kernel_ext.hidden_state import undefined_name_message
from flyte_lab.magics.kernel_state import setup_names


@magics_class
class TaskMagics(Magics):
    """The setup and task magics of DESIGN.md section 1."""

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
        try:  # what this cell binds, a task body may read (as in a pipeline run)
            setup_names(self._shell).update(analyse(self._shell.transform_cell(cell)).bound)
        except SyntaxError:
            pass  # run_cell has shown it
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
        self._check_names(spec, body)
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
            count = self._run_mapped(spec, body, out_types)
            each = f" for each of its {count} elements"
        else:
            self._run_body(spec, body, out_types, "")
            each = ""
        if spec.outputs:  # said once they passed: a fixed cell re-run shows it is fixed, not just silent
            declared = ", ".join(f"{name}: {text}" for name, text in spec.outputs)
            print(f"{spec.name}: outputs passed the checks ({declared}){each}")

    # -- helpers -----------------------------------------------------------------------------

    def _check_names(self, spec: HeaderSpec, body: str) -> None:
        """`undefined-name`, as `flyte-lab validate` finds it, before the body runs.

        The body may read its inputs, what the `%%flyte_setup` cells bound and
        builtins; anything else this kernel happens to hold (an exploration
        cell's variable, another task's output that is not declared) would be
        missing in a pipeline run, so the cell stops here.
        """
        try:
            report = analyse(self._shell.transform_cell(body),
                             {name for name, _, _, _ in spec.inputs} | setup_names(self._shell))
        except SyntaxError:
            return  # run_cell shows the syntax error where it is
        if report.unbound_reads:
            first = report.unbound_reads[0]
            more = len(report.unbound_reads) - 1
            also = f" (and {more} more: {', '.join(u.name for u in report.unbound_reads[1:])})" if more else ""
            raise UsageError(f"line {first.line}: error[undefined-name]: "
                             f"{undefined_name_message(self._shell, spec.name, first.name)}{also}")

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

    def _run_mapped(self, spec: HeaderSpec, body: str, out_types: dict[str, Any]) -> int:
        """`--map-over X`: one body run per element; each output becomes the list of its values. The number of
        elements run."""
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
        return len(items)


def _error_name(result: Any) -> str:
    error = result.error_in_exec or result.error_before_exec
    return f"`{type(error).__name__}`" if error is not None else "an error"
