"""Resolve annotation text to `TypeRef`s against the setup cells, without importing anything.

`pd.DataFrame` after `import pandas as pd` is `pandas.DataFrame`; a class
defined in a setup cell is `__setup__.Name` and remembers whether it is a
dataclass, an Enum or a pandera schema (with its column names).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from flyte_lab.graph.model import TypeRef

BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset",
                 "complex", "object", "bytearray"}
# typing aliases that mean a builtin generic
_TYPING_BUILTINS = {
    "typing.List": "list", "typing.Dict": "dict", "typing.Tuple": "tuple", "typing.Set": "set",
    "typing.FrozenSet": "frozenset", "typing.Sequence": "list", "collections.abc.Sequence": "list",
    "typing.Mapping": "dict", "collections.abc.Mapping": "dict",
}
_QUALIFIED_ALIASES = {
    "pandas.core.frame.DataFrame": "pandas.DataFrame",
    "numpy.typing.NDArray": "numpy.ndarray",
    "pandera.typing.pandas.DataFrame": "pandera.typing.DataFrame",
    "pathlib.PosixPath": "pathlib.Path",
    "typing_extensions.Any": "typing.Any",
    "typing_extensions.Optional": "typing.Optional",
}
_ENUM_BASES = {"enum.Enum", "enum.IntEnum", "enum.StrEnum", "enum.Flag", "enum.IntFlag"}
_SCHEMA_BASES = {"pandera.DataFrameModel", "pandera.SchemaModel", "pandera.api.pandas.model.DataFrameModel",
                 "pandera.pandas.DataFrameModel"}
_DATACLASS_DECORATORS = {"dataclasses.dataclass"}


class UnknownType(Exception):
    """An annotation names something the setup cells never import or define."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass
class TypeScope:
    """Names visible to annotations: imports and classes of the setup cells."""

    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    classes: dict[str, TypeRef] = field(default_factory=dict)  # local name -> class defined in setup
    schemas: dict[str, frozenset[str]] = field(default_factory=dict)  # schema name -> columns
    _resolved: dict[str, TypeRef] = field(default_factory=dict, repr=False)  # memo: tasks repeat types

    @classmethod
    def from_sources(cls, sources: list[str]) -> TypeScope:
        scope = cls()
        for source in sources:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue  # reported as a syntax error of the setup cell elsewhere
            for node in tree.body:
                scope._visit(node)
        return scope

    def _visit(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    self.aliases[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name != "*":
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.ClassDef):
            self._visit_class(node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            columns = _schema_columns_from_call(node.value, self)
            if columns is not None:
                name = node.targets[0].id
                self.schemas[name] = columns
                self.classes[name] = TypeRef(f"__setup__.{name}", text=name, defined_as="schema",
                                             columns=columns)
        elif isinstance(node, ast.If | ast.Try):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._visit(child)

    def _visit_class(self, node: ast.ClassDef) -> None:
        bases = {self.qualify_expr(b) for b in node.bases}
        decorators = {self.qualify_expr(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
        kind: str | None = None
        columns: frozenset[str] | None = None
        if decorators & _DATACLASS_DECORATORS:
            kind = "dataclass"
        elif bases & _ENUM_BASES:
            kind = "enum"
        elif bases & _SCHEMA_BASES or any(self.classes.get(b.removeprefix("__setup__."), TypeRef("")).defined_as
                                          == "schema" for b in bases):
            kind = "schema"
            inherited: set[str] = set()
            for base in bases:
                inherited |= set(self.schemas.get(base.removeprefix("__setup__."), ()))
            own = {stmt.target.id for stmt in node.body
                   if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                   and stmt.target.id != "Config"}
            columns = frozenset(inherited | own)
            self.schemas[node.name] = columns
        self.classes[node.name] = TypeRef(f"__setup__.{node.name}", text=node.name, defined_as=kind,
                                          columns=columns)

    def qualify_expr(self, node: ast.expr) -> str:
        """Qualified dotted name of a Name/Attribute expression ('' if it is neither)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return ""
        head = node.id
        if head in self.classes:
            qualified = self.classes[head].name
        else:
            qualified = self.aliases.get(head, head)
        name = ".".join([qualified, *reversed(parts)])
        return _QUALIFIED_ALIASES.get(name, name)

    def resolve(self, text: str) -> TypeRef:
        """Resolve annotation text; raise `UnknownType` naming the first unknown name."""
        hit = self._resolved.get(text)
        if hit is not None:
            return hit
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise UnknownType(text) from None
        ref = self._resolve(node)
        ref = TypeRef(ref.name, ref.args, text, ref.columns, ref.defined_as)
        self._resolved[text] = ref
        return ref

    def _resolve(self, node: ast.expr) -> TypeRef:
        text = ast.unparse(node)
        if isinstance(node, ast.Constant):
            if node.value is None:
                return TypeRef("NoneType", text="None")
            if isinstance(node.value, str):  # a forward reference written as a string
                return self.resolve(node.value)
            raise UnknownType(text)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return _union([self._resolve(node.left), self._resolve(node.right)], text)
        if isinstance(node, ast.Subscript):
            base = self._resolve(node.value)
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base.name == "typing.Literal":
                return TypeRef("typing.Literal", text=text)
            if base.name == "typing.Annotated":
                return self._resolve(items[0])
            args = tuple(TypeRef("...", text="...") if isinstance(i, ast.Constant) and i.value is Ellipsis
                         else self._resolve(i) for i in items)
            if base.name == "typing.Optional":
                return _union([*args, TypeRef("NoneType", text="None")], text)
            if base.name == "typing.Union":
                return _union(list(args), text)
            if base.name == "pandera.typing.DataFrame" and args:
                return TypeRef(base.name, args, text, columns=args[0].columns)
            return TypeRef(base.name, args, text)
        if isinstance(node, ast.Name | ast.Attribute):
            head = node
            while isinstance(head, ast.Attribute):
                head = head.value  # type: ignore[assignment]
            if not isinstance(head, ast.Name):
                raise UnknownType(text)
            if isinstance(node, ast.Name):
                if node.id in self.classes:
                    return self.classes[node.id]
                if node.id in self.aliases:
                    qualified = self.qualify_expr(node)
                    return TypeRef(_TYPING_BUILTINS.get(qualified, qualified), text=text)
                if node.id in BUILTIN_TYPES:
                    return TypeRef(node.id, text=text)
                if node.id == "None":
                    return TypeRef("NoneType", text="None")
                raise UnknownType(node.id)
            if head.id not in self.aliases and head.id not in self.classes:
                raise UnknownType(head.id)
            qualified = self.qualify_expr(node)
            return TypeRef(_TYPING_BUILTINS.get(qualified, qualified), text=text)
        raise UnknownType(text)


def _union(members: list[TypeRef], text: str) -> TypeRef:
    flat: list[TypeRef] = []
    for member in members:
        for item in member.args if member.name == "typing.Union" else (member,):
            if item not in flat:
                flat.append(item)
    if any(m.name == "typing.Any" for m in flat):
        return TypeRef("typing.Any", text=text)
    non_none = [m for m in flat if m.name != "NoneType"]
    if len(non_none) == 1 and len(flat) == 2:
        return TypeRef("typing.Optional", (non_none[0],), text)
    return TypeRef("typing.Union", tuple(flat), text)


def _schema_columns_from_call(node: ast.expr, scope: TypeScope) -> frozenset[str] | None:
    """Columns of `pa.DataFrameSchema({"a": ..., "b": ...})`, when written literally."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    if not scope.qualify_expr(node.func).endswith("DataFrameSchema"):
        return None
    first = node.args[0]
    if isinstance(first, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                           for k in first.keys):
        return frozenset(str(k.value) for k in first.keys if isinstance(k, ast.Constant))
    return None
