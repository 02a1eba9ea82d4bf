"""Static scope analysis of cell bodies: which names a body binds and which it reads unbound.

Uses CPython's own symbol tables (`symtable`, through its C module), so every binding form the
compiler knows counts: assignments, imports, `for`/`with`/`except` targets,
walrus, `match` captures, `def`/`class`, `global`, comprehension and lambda
scopes. Names that nested scopes read resolve against module level, so a
helper reading a name assigned later in the cell is fine. The AST is walked
only to find the line of a name that is reported.
"""

from __future__ import annotations

import _symtable
import ast
import builtins
from collections.abc import Container
from dataclasses import dataclass

BUILTIN_NAMES = frozenset(dir(builtins)) | {"get_ipython", "display", "__file__", "In", "Out", "exit", "quit"}


_BINDS = _symtable.DEF_LOCAL | _symtable.DEF_IMPORT | _symtable.DEF_PARAM
_GLOBAL_SCOPES = (_symtable.GLOBAL_IMPLICIT, _symtable.GLOBAL_EXPLICIT)


@dataclass(frozen=True)
class NameUse:
    name: str
    line: int  # 1-based within the analysed source


@dataclass
class ScopeReport:
    bound: set[str]  # names bound at module level (incl. `global` writes from functions)
    unbound_reads: list[NameUse]  # reads of names that nothing binds, in source order


def analyse(source: str, known: Container[str] = frozenset()) -> ScopeReport:
    """Module-level bindings of `source` and its reads of names neither bound nor `known`.

    Raises SyntaxError when the source does not compile.
    """
    # the raw C table: its flag dict avoids building a Symbol object per name (hot for big notebooks)
    table = _symtable.symtable(source, "<cell>", "exec")
    bound: set[str] = set()
    read_globally: set[str] = set()
    for name, flags in table.symbols.items():
        if flags & _BINDS:
            bound.add(name)
        if flags & _symtable.USE:
            read_globally.add(name)
    stack = list(table.children)
    while stack:
        child = stack.pop()
        stack.extend(child.children)
        for name, flags in child.symbols.items():
            scope = (flags >> _symtable.SCOPE_OFF) & _symtable.SCOPE_MASK
            if scope not in _GLOBAL_SCOPES:
                continue
            if scope == _symtable.GLOBAL_EXPLICIT and flags & _BINDS:
                bound.add(name)
            if flags & _symtable.USE:
                read_globally.add(name)
    missing = {n for n in read_globally if n not in bound and n not in BUILTIN_NAMES and n not in known}
    if not missing:
        return ScopeReport(bound, [])
    return ScopeReport(bound, _first_reads(source, missing))


def _first_reads(source: str, names: set[str]) -> list[NameUse]:
    first: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load):
            if node.id not in first or node.lineno < first[node.id]:
                first[node.id] = node.lineno
    for name in names - set(first):  # read only through `del` or augmented assignment
        first[name] = 1
    return [NameUse(n, line) for n, line in sorted(first.items(), key=lambda item: (item[1], item[0]))]
