"""Build the typed task graph from classified cells and collect every diagnostic in one pass.

Linear in the number of tasks and parameters: outputs are indexed by name
once, edges come from dictionary look-ups, order from `graphlib` (`topo_order`).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from typing import Any

from flyte_lab.errors import HeaderError
from flyte_lab.graph.header import declared_outputs, parse_header
from flyte_lab.graph.model import Diagnostic, Param, SetupCell, Task, TypeRef, Workflow, WorkflowInput
from flyte_lab.graph.notebook_reader import Cell, to_python
from flyte_lab.graph.scopes import analyse
from flyte_lab.graph.topo_order import topological_order
from flyte_lab.graph.type_names import TypeScope, UnknownType
from flyte_lab.graph.type_rules import as_list, mismatch, pickled_types


class _Broken:
    """What headers that did not become tasks declare: so their consumers are not taken for workflow inputs.

    `outputs`: output name -> cell, recovered from the header (leniently when it does not parse);
    `unknown`: cells with an `->` whose names could not be read at all.
    """

    def __init__(self) -> None:
        self.outputs: dict[str, int] = {}
        self.unknown: list[int] = []

    def add(self, cell: int, names: tuple[str, ...] | None) -> None:
        if names is None:
            self.unknown.append(cell)
            return
        for name in names:
            self.outputs.setdefault(name, cell)


class _Collector:
    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, code: str, message: str, **where: Any) -> None:
        self.items.append(Diagnostic("error", code, message, **where))

    def warning(self, code: str, message: str, **where: Any) -> None:
        self.items.append(Diagnostic("warning", code, message, **where))


def build(path: str, cells: list[Cell], launch_params: dict[str, Any] | None = None,
          launching: bool = False) -> Workflow:
    """The workflow of these cells; `launch_params` are `-p` values (already known names)."""
    diags = _Collector()
    wf = Workflow(path=path)
    wf.setup = [SetupCell(c.index, c.source) for c in cells if c.kind == "setup"]
    setup_trees = _parse_setup(wf.setup, diags)
    scope = TypeScope.from_sources([c.source for c in wf.setup])
    setup_names: set[str] = set()
    for source in setup_trees:
        setup_names |= analyse(source).bound
    _read_parameters(wf, cells, diags)
    explored = _exploration_names(cells)
    broken = _Broken()
    for cell in cells:
        if cell.kind == "task":
            task = _make_task(cell, scope, diags, wf.tasks, broken)
            if task is not None:
                wf.tasks[task.name] = task
    producers = _wire(wf, diags)
    _order(wf, diags)
    for task in wf.tasks.values():
        _check_body(task, setup_names, explored, set(wf.parameters), diags)
        _warn_pickled(task, diags)
    wf.broken_outputs = {n: c for n, c in broken.outputs.items() if n not in producers}
    _workflow_inputs(wf, producers, launch_params or {}, launching, diags, bool(broken.unknown))
    # compiler order: by place in the notebook, file-level problems first
    wf.diagnostics = sorted(diags.items, key=lambda d: (d.cell or 0, d.line or 0))
    return wf


def _parse_setup(setup: list[SetupCell], diags: _Collector) -> list[str]:
    """The setup cells as plain Python, those that compile."""
    trees = []
    for cell in setup:
        try:
            source = to_python(cell.source)
            compile(source, f"<cell {cell.cell}>", "exec", ast.PyCF_ONLY_AST)
            trees.append(source)
        except SyntaxError as exc:
            diags.error("syntax-error", f"%%flyte_setup cell {cell.cell} does not parse: {exc.msg}",
                        cell=cell.cell, line=(exc.lineno or 0) + 1)
    return trees


def _read_parameters(wf: Workflow, cells: list[Cell], diags: _Collector) -> None:
    for cell in cells:
        if cell.kind != "parameters":
            continue
        wf.parameters_source = cell.source
        try:
            tree = ast.parse(to_python(cell.source))
        except SyntaxError as exc:
            diags.error("syntax-error", f"parameters cell {cell.index} does not parse: {exc.msg}",
                        cell=cell.index, line=exc.lineno)
            return
        for stmt in tree.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value is not None else [])
            value_node = getattr(stmt, "value", None)
            for target in targets:
                if not isinstance(target, ast.Name) or value_node is None:
                    continue
                try:
                    wf.parameters[target.id] = ast.literal_eval(value_node)
                except (ValueError, SyntaxError, TypeError):
                    diags.warning(
                        "non-literal-parameter",
                        f"parameter `{target.id}` in the parameters cell is not a literal "
                        f"(`{ast.unparse(value_node)}`), so it cannot be a workflow default; write a literal value",
                        cell=cell.index, line=stmt.lineno, name=target.id)
        return  # papermill uses the first tagged cell only


def _exploration_names(cells: list[Cell]) -> dict[str, int]:
    found: dict[str, int] = {}
    for cell in cells:
        if cell.kind != "exploration":
            continue
        try:
            bound = analyse(to_python(cell.source)).bound
        except SyntaxError:
            continue  # exploration cells are the user's scratch space
        for name in bound:
            found.setdefault(name, cell.index)
    return found


def _line_of(cell: Cell, name: str, header_lines: int) -> int:
    pattern = re.compile(rf"\b{re.escape(name)}\s*:")
    for i, line in enumerate(cell.source.split("\n")[:header_lines], start=1):
        if pattern.search(line):
            return i
    return 1


def _make_task(cell: Cell, scope: TypeScope, diags: _Collector, tasks: dict[str, Task],
               broken: _Broken) -> Task | None:
    """The cell's task, or None with a `bad-header` error (and what the header declares noted in `broken`)."""
    try:
        spec = parse_header(cell.source)
    except HeaderError as exc:
        diags.error("bad-header", exc.message, cell=cell.index, line=1)
        broken.add(cell.index, declared_outputs(cell.source))
        return None
    if spec.name in tasks:
        diags.error("bad-header", f"task name `{spec.name}` is already used by cell {tasks[spec.name].cell}; "
                    "task names must be unique", task=spec.name, cell=cell.index, line=1, name=spec.name)
        broken.add(cell.index, tuple(name for name, _ in spec.outputs))
        return None
    ok = True

    def resolve(name: str, text: str, role: str) -> TypeRef | None:
        nonlocal ok
        try:
            return scope.resolve(text)
        except UnknownType as exc:
            ok = False
            diags.error("bad-header", f"unknown type name `{exc.name}` in {role} `{name}: {text}` of task "
                        f"`{spec.name}`; import or define it in a %%flyte_setup cell",
                        task=spec.name, cell=cell.index, line=_line_of(cell, name, spec.header_lines), name=name)
            return None

    inputs = []
    for name, text, has_default, default in spec.inputs:
        ref = resolve(name, text, "input")
        if ref is not None:
            inputs.append(Param(name, ref, has_default, default))
    outputs = []
    for name, text in spec.outputs:
        ref = resolve(name, text, "output")
        if ref is not None:
            outputs.append(Param(name, ref))
    if not ok:
        broken.add(cell.index, tuple(name for name, _ in spec.outputs))
        return None
    header, body = _split_cell(cell.source, spec.header_lines)
    return Task(name=spec.name, cell=cell.index, header=header, body=body, body_line=spec.header_lines + 1,
                inputs=inputs, outputs=outputs, options=spec.options, source=cell.source)


def _split_cell(source: str, header_lines: int) -> tuple[str, str]:
    """Header text (continuations joined, backslashes dropped) and the body below it."""
    end = -1
    for _ in range(header_lines):
        end = source.find("\n", end + 1)
        if end < 0:
            end = len(source)
            break
    head = source[:end]
    if header_lines > 1:
        head = " ".join(line.rstrip().removesuffix("\\").strip() for line in head.split("\n"))
    return head, source[end + 1:]


def delivered_type(task: Task, output: Param) -> TypeRef:
    """The type downstream tasks receive: a `--map-over` task gathers its outputs into lists."""
    return as_list(output.type) if task.options.map_over else output.type


def expected_type(task: Task, param: Param) -> TypeRef:
    """The type an input must be fed: a mapped input takes the list of its elements."""
    return as_list(param.type) if task.options.map_over == param.name else param.type


def _wire(wf: Workflow, diags: _Collector) -> dict[str, tuple[Task, Param]]:
    producers: dict[str, tuple[Task, Param]] = {}
    for task in wf.tasks.values():
        for out in task.outputs:
            if out.name in producers:
                first = producers[out.name][0]
                diags.error("duplicate-output", f"output `{out.name}` of task `{task.name}` (cell {task.cell}) is "
                            f"also produced by task `{first.name}` (cell {first.cell}); rename one of them",
                            task=task.name, cell=task.cell, line=1, name=out.name)
                continue
            producers[out.name] = (task, out)
    for task in wf.tasks.values():
        for param in task.inputs:
            hit = producers.get(param.name)
            if hit is None:
                continue
            source, out = hit
            wf.edges.append((source.name, task.name, param.name))
            produced, wanted = delivered_type(source, out), expected_type(task, param)
            reason = mismatch(produced, wanted)
            if reason:
                extra = f" ({reason})" if "column" in reason else ""
                diags.error("type-mismatch",
                            f"input `{param.name}: {wanted.display()}` of task `{task.name}` (cell {task.cell}) is "
                            f"fed by output `{out.name}: {produced.display()}` of task `{source.name}` "
                            f"(cell {source.cell}){extra}; declare the same type on both sides",
                            task=task.name, cell=task.cell, line=1, name=param.name)
    return producers


def _order(wf: Workflow, diags: _Collector) -> None:
    """Topological order; whatever is left over holds cycles, each reported with its path."""
    children: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in wf.edges:
        children[a].append(b)
    wf.order = topological_order(wf.tasks, ((a, b) for a, b, _ in wf.edges))
    ordered = set(wf.order)
    left = [n for n in wf.tasks if n not in ordered]
    reported: set[str] = set()
    for start in left:
        if start in reported:
            continue
        cycle = _find_cycle(start, children, set(left))
        if cycle is None or reported.intersection(cycle):
            continue
        reported.update(cycle)
        first = wf.tasks[cycle[0]]
        diags.error("cycle", f"tasks form a cycle {' -> '.join([*cycle, cycle[0]])}; an output cannot feed a "
                    "task upstream of its producer", task=first.name, cell=first.cell, line=1)


def _find_cycle(start: str, children: dict[str, list[str]], left: set[str]) -> list[str] | None:
    """A cycle reachable from `start` (iterative DFS), as the list of its tasks."""
    position: dict[str, int] = {}
    path: list[str] = []
    stack: list[tuple[str, int]] = [(start, 0)]
    done: set[str] = set()
    while stack:
        node, i = stack.pop()
        if i == 0:
            position[node] = len(path)
            path.append(node)
        kids = [k for k in children[node] if k in left]
        if i < len(kids):
            stack.append((node, i + 1))
            kid = kids[i]
            if kid in position:
                return path[position[kid]:]
            if kid not in done:
                stack.append((kid, 0))
            continue
        done.add(node)
        path.pop()
        del position[node]
    return None


def _check_body(task: Task, setup_names: set[str], explored: dict[str, int], parameter_names: set[str],
                diags: _Collector) -> None:
    known = {p.name for p in task.inputs} | setup_names
    try:
        report = analyse(to_python(task.body), known)
    except SyntaxError as exc:
        diags.error("syntax-error", f"the body of task `{task.name}` does not parse: {exc.msg}",
                    task=task.name, cell=task.cell, line=task.body_line + (exc.lineno or 1) - 1)
        return
    for use in report.unbound_reads:
        line = task.body_line + use.line - 1
        where = f"task `{task.name}` (cell {task.cell}) reads `{use.name}`"
        if use.name in explored:
            msg = (f"{where}, which is defined only in exploration cell {explored[use.name]}: that cell never "
                   f"runs in a pipeline; move it into a %%flyte_setup cell or declare `{use.name}` as an input")
        elif use.name in parameter_names:
            msg = (f"{where}, which is set in the parameters cell; declare `{use.name}: TYPE` as an input of "
                   f"`{task.name}` to receive it")
        else:
            msg = (f"{where}, which is not an input, not defined in the body, not from a %%flyte_setup cell "
                   "and not a builtin; declare it as an input or define it")
        diags.error("undefined-name", msg, task=task.name, cell=task.cell, line=line, name=use.name)
    for out in task.outputs:
        if out.name not in report.bound:
            diags.error("unassigned-output", f"task `{task.name}` (cell {task.cell}) declares output "
                        f"`{out.name}: {out.type.display()}` but its body never assigns `{out.name}`; assign it "
                        "at the top level of the cell", task=task.name, cell=task.cell, line=1, name=out.name)


def _warn_pickled(task: Task, diags: _Collector) -> None:
    for param in [*task.inputs, *task.outputs]:
        for qualified in pickled_types(param.type):
            diags.warning("pickled-type", f"`{param.name}: {param.type.display()}` of task `{task.name}` has no "
                          f"typed codec for `{qualified}`; it travels by cloudpickle (HMAC-signed)",
                          task=task.name, cell=task.cell, line=1, name=param.name)


def _workflow_inputs(wf: Workflow, producers: dict[str, tuple[Task, Param]], launch: dict[str, Any],
                     launching: bool, diags: _Collector, unknown_outputs: bool) -> None:
    """Inputs no task produces, with their defaults, and a `missing-input` for each one without a value.

    A name a broken header declares as an output is not a workflow input (its `bad-header` error already
    says what to fix). When a broken header's outputs cannot be read at all (`unknown_outputs`), any
    input may be one of them, so no `missing-input` is reported until the header is fixed.
    """
    consumers: dict[str, list[tuple[Task, Param]]] = defaultdict(list)
    for name in wf.order or list(wf.tasks):
        task = wf.tasks[name]
        for param in task.inputs:
            if param.name not in producers and param.name not in wf.broken_outputs:
                consumers[param.name].append((task, param))
    for name, uses in consumers.items():
        first_task, first = uses[0]
        declared = expected_type(first_task, first)
        for task, param in uses[1:]:
            other = expected_type(task, param)
            if mismatch(declared, other) and mismatch(other, declared):
                diags.error("type-mismatch", f"workflow input `{name}` is declared `{other.display()}` by task "
                            f"`{task.name}` (cell {task.cell}) but `{declared.display()}` by task "
                            f"`{first_task.name}` (cell {first_task.cell}); declare the same type on both sides",
                            task=task.name, cell=task.cell, line=1, name=name)
        defaults = [p.default for _, p in uses if p.has_default]
        has_default = name in wf.parameters or bool(defaults)
        default = wf.parameters[name] if name in wf.parameters else (defaults[0] if defaults else None)
        wf.workflow_inputs[name] = WorkflowInput(name, declared, has_default, default,
                                                 tuple(t.name for t, _ in uses))
        if name in launch or name in wf.parameters or unknown_outputs:
            continue
        for task, param in uses:
            if param.has_default:
                continue
            text = (f"workflow input `{name}: {param.type.display()}` of task `{task.name}` (cell {task.cell}) has "
                    f"no value: pass `-p {name}=VALUE`, give it a default in the header, or set it in the "
                    "parameters cell")
            severity = diags.error if launching or launch else diags.warning
            severity("missing-input", text, task=task.name, cell=task.cell, line=1, name=name)
