"""Parse a `%%flyte_task NAME(INPUTS) -> OUTPUTS [OPTIONS]` header with `ast`.

The header is split at bracket depth zero (strings respected) into the
parameter list, the outputs and the options, so defaults like `"a -> b"` or
`"--x"` never confuse it. Nothing is evaluated: defaults go through
`ast.literal_eval`.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
import shlex
from typing import Any

from flyte_lab.errors import HeaderError
from flyte_lab.graph.model import HeaderSpec, TaskOptions

TASK_MAGIC = "%%flyte_task"
SETUP_MAGIC = "%%flyte_setup"

_IDENT = re.compile(r"[A-Za-z_]\w*")
# ASCII digits only: `\d` also matches digits of other scripts, which no scheduler reads
_MEM = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T|k|B)?$")
_WHOLE = re.compile(r"^[0-9]+$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?$")  # not \d: it matches `٣`, which float() reads
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_FLAG_OPTIONS = {"--cache"}
_VALUE_OPTIONS = {
    "--cpu", "--mem", "--gpu", "--retries", "--timeout", "--cache-version", "--image", "--env", "--map-over",
    "--batch",
}


def split_header(source: str) -> tuple[str, int]:
    """The header text (continuations joined) and how many cell lines it spans."""
    end = source.find("\n")
    first = source if end < 0 else source[:end]
    if not first.rstrip().endswith("\\"):  # the usual one-line header
        return first.strip(), 1
    lines = source.split("\n")
    parts: list[str] = []
    count = 0
    for line in lines:
        count += 1
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        break
    return " ".join(p.strip() for p in parts).strip(), count


def parse_header(source: str) -> HeaderSpec:
    """Parse the header at the top of a task cell's source; raise `HeaderError`."""
    text, nlines = split_header(source)
    if not text.startswith(TASK_MAGIC):
        raise HeaderError(f"a task cell must start with `{TASK_MAGIC}`")
    rest = text[len(TASK_MAGIC):].strip()
    match = _IDENT.match(rest)
    if not match:
        raise HeaderError(f"expected a task name after `{TASK_MAGIC}`, got `{rest[:30] or 'nothing'}`")
    name = match.group(0)
    rest = rest[match.end():].lstrip()
    if not rest.startswith("("):
        raise HeaderError(f"task `{name}`: expected `(` with the inputs after the name")
    close = _matching_paren(rest, 0)
    if close < 0:
        raise HeaderError(f"task `{name}`: the input list has no closing `)`")
    inputs_text = rest[1:close]
    rest = rest[close + 1:].strip()
    outputs_text, options_text = _split_options(rest)
    if outputs_text and not outputs_text.startswith("->"):
        raise HeaderError(
            f"task `{name}`: expected `-> OUTPUTS` or `--option` after the inputs, got `{outputs_text[:30]}`")
    outputs_text = _unwrap_outputs(outputs_text[2:].strip()) if outputs_text else ""
    simple_in = _simple_params(inputs_text, defaults=True)
    simple_out = _simple_params(outputs_text, defaults=False) if outputs_text != _NO_OUTPUTS else None
    if simple_in is not None and simple_out is not None:
        inputs = simple_in
        outputs = tuple((n, t) for n, t, _, _ in simple_out)
    else:
        # one compile for both lists; on error, parse each alone to say which is wrong
        try:
            both = ast.parse(f"def _f({inputs_text}): pass\ndef _g({outputs_text}): pass").body
        except SyntaxError:
            both = None
        inputs = _parse_inputs(name, inputs_text, both[0] if both else None)
        outputs = _parse_outputs(name, outputs_text, both[1] if both else None)
    options = _parse_options(name, options_text, {i[0] for i in inputs})
    names = [i[0] for i in inputs]
    for out_name, _ in outputs:
        if out_name in names:
            raise HeaderError(f"task `{name}`: `{out_name}` is both an input and an output; rename one")
    return HeaderSpec(name=name, inputs=inputs, outputs=outputs, options=options, header_lines=nlines)


_ARROW_OR_QUOTE = re.compile("->|['\"]")
_OPTION_START = re.compile(r"\s--(?=[A-Za-z])")
_LENIENT_NAME = re.compile(r"\s*\(?\s*([A-Za-z_]\w*)\s*(?::|\)?\s*$)")


def declared_outputs(source: str) -> tuple[str, ...] | None:
    """The output names a header declares, read leniently from a header that may not parse.

    Why: a broken header must not make its consumers look like workflow inputs. The names are the
    identifiers before `:` after the first `->` outside strings (brackets need not balance).
    `()` when there is no arrow (no outputs), None when an arrow is there but no name can be read.
    """
    text, _ = split_header(source)
    pos, quote = 0, ""
    while True:
        match = _ARROW_OR_QUOTE.search(text, pos)
        if match is None:
            return ()
        pos = match.end()
        found = match.group()
        if quote:
            quote = "" if found == quote and text[match.start() - 1] != "\\" else quote
        elif found == "->":
            break
        else:
            quote = found
    outputs = _OPTION_START.split(text[pos:], maxsplit=1)[0].strip()
    if outputs in ("", "None", "(None)", "()"):
        return ()
    names: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(outputs + ","):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            named = _LENIENT_NAME.match(outputs[start:i])
            if named and not keyword.iskeyword(named.group(1)) and named.group(1) not in names:
                names.append(named.group(1))
            start = i + 1
    return tuple(names) or None


_SPECIAL = re.compile(r"""[()\[\]{}'"\\]|-""")


def _scan(text: str, start: int, stop_at: str | None = None) -> int:
    """Index of the bracket closing text[start] (or of `stop_at` at depth 0); -1 if none.

    Jumps between brackets, quotes and dashes with a regex instead of walking
    every character: headers are scanned once per task and notebooks can hold thousands.
    """
    depth = 0
    quote: str | None = None
    pos = start
    while True:
        match = _SPECIAL.search(text, pos)
        if match is None:
            return -1
        i = match.start()
        ch = text[i]
        pos = i + 1
        if quote:
            if ch == "\\":
                pos = i + 2
            elif text.startswith(quote, i):
                pos = i + len(quote)
                quote = None
        elif ch in "'\"":
            quote = text[i:i + 3] if text[i:i + 3] in ("\'\'\'", '"""') else ch
            pos = i + len(quote)
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and stop_at is None:
                return i
            if depth < 0:
                return -1
        elif stop_at and depth == 0 and ch == "-" and text.startswith(stop_at, i - 1):
            return i - 1


def _matching_paren(text: str, start: int) -> int:
    return _scan(text, start)


def _split_options(text: str) -> tuple[str, str]:
    """Split `-> outputs --opt v` at the first ` --` outside brackets and strings."""
    if "--" not in text:
        return text.strip(), ""
    probe = " " + text
    idx = _scan(probe, 0, stop_at=" --")
    if idx < 0:
        return text.strip(), ""
    return probe[:idx].strip(), probe[idx:].strip()


def _segment(text: str, node: ast.expr) -> str:
    """Source text of an annotation in `def _f(TEXT)` (col offsets count UTF-8 bytes)."""
    if node.end_col_offset is None or node.lineno != node.end_lineno:
        return ast.unparse(node)
    offset = len("def _f(")  # `def _g(` on line 2 has the same length
    return text.encode()[node.col_offset - offset:node.end_col_offset - offset].decode()


# The fast path: plain `name: Type[...] = number` lists need no AST per task (notebooks hold thousands).
# Anything else (strings, containers as defaults, `*args`, odd spacing) takes the `ast` path.
_SIMPLE_PARAM = re.compile(r"\s*([A-Za-z_]\w*)\s*:\s*([A-Za-z_][\w.\[\], |]*?)\s*(?:=\s*(\S+)\s*)?$")
# numbers exactly as Python spells them: no leading zeros on integers (`007` is a SyntaxError there),
# no `_`, no `.5`/`5.`; anything else falls through to `ast`, so both paths refuse with one diagnostic
_SIMPLE_DEFAULT = re.compile(r"-?(?:0+|[1-9]\d*|\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)$")
_NOT_SIMPLE = re.compile(r"""['"*/#()]""")
_COMMA_IN_BRACKETS = re.compile(r"\[[^\]]*,")
_BRACKETS_AND_COMMAS = re.compile(r"[\[\],]")
_CONSTANTS = {"True": True, "False": False, "None": None}
_checked_annotations: dict[str, bool] = {}


def _annotation_ok(text: str) -> bool:
    ok = _checked_annotations.get(text)
    if ok is None:
        try:
            ast.parse(text, mode="eval")
            ok = True
        except SyntaxError:
            ok = False
        _checked_annotations[text] = ok
    return ok


def _simple_params(text: str, defaults: bool) -> tuple[tuple[str, str, bool, Any], ...] | None:
    if not text.strip():
        return ()
    if _NOT_SIMPLE.search(text) or (not defaults and "=" in text):
        return None
    if "[" not in text or not _COMMA_IN_BRACKETS.search(text):
        parts = text.split(",")
    else:
        parts = []
        depth, start = 0, 0
        for match in _BRACKETS_AND_COMMAS.finditer(text):
            ch = match.group()
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
            elif depth == 0:
                parts.append(text[start:match.start()])
                start = match.end()
        parts.append(text[start:])
    out: list[tuple[str, str, bool, Any]] = []
    seen: set[str] = set()
    seen_default = False
    for part in parts:
        found = _SIMPLE_PARAM.match(part)
        if not found or keyword.iskeyword(found.group(1)) or found.group(1) in seen:
            return None
        name, ann, default = found.groups()
        seen.add(name)
        if not _annotation_ok(ann):
            return None
        if default is None:
            if seen_default:
                return None  # a non-default after a default: let `ast` word the error
            out.append((name, ann, False, None))
            continue
        if not defaults:
            return None
        seen_default = True
        if default in _CONSTANTS:
            out.append((name, ann, True, _CONSTANTS[default]))
        elif _SIMPLE_DEFAULT.match(default):
            number = float(default) if any(c in default for c in ".eE") else int(default)
            out.append((name, ann, True, number))
        else:
            return None
    return tuple(out)


def _parse_inputs(task: str, text: str, fn: ast.stmt | None) -> tuple[tuple[str, str, bool, Any], ...]:
    if fn is None:
        try:
            fn = ast.parse(f"def _f({text}): pass").body[0]
        except SyntaxError as exc:
            raise HeaderError(
                f"task `{task}`: the inputs `({text})` are not a valid parameter list: {exc.msg}") from None
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    if args.vararg or args.kwarg or args.posonlyargs:
        raise HeaderError(f"task `{task}`: inputs cannot use `*args`, `**kwargs` or `/`; name each input")
    params = args.args + args.kwonlyargs
    defaults: list[ast.expr | None] = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    defaults += list(args.kw_defaults)
    out = []
    for param, default in zip(params, defaults, strict=True):
        if param.annotation is None:
            raise HeaderError(f"task `{task}`: input `{param.arg}` has no type; write `{param.arg}: TYPE`")
        ann = _segment(text, param.annotation)
        if default is None:
            out.append((param.arg, ann, False, None))
            continue
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError):
            raise HeaderError(
                f"task `{task}`: the default of input `{param.arg}` must be a literal, not `{ast.unparse(default)}`"
            ) from None
        out.append((param.arg, ann, True, value))
    return tuple(out)


_NO_OUTPUTS = "\0none"


def _unwrap_outputs(text: str) -> str:
    if text in ("None", "(None)", "()"):
        return ""
    if not text:
        return _NO_OUTPUTS  # `->` with nothing after it
    if text.startswith("(") and _matching_paren(text, 0) == len(text) - 1:
        return text[1:-1].strip()
    return text


def _parse_outputs(task: str, text: str, fn: ast.stmt | None) -> tuple[tuple[str, str], ...]:
    if text == _NO_OUTPUTS:
        raise HeaderError(f"task `{task}`: `->` must be followed by outputs (`name: type, ...`) or `None`")
    if not text:
        return ()
    if fn is None:
        try:
            fn = ast.parse(f"def _f({text}): pass").body[0]
        except SyntaxError:
            raise HeaderError(f"task `{task}`: the outputs `{text}` must read `name: type, ...`") from None
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    if args.vararg or args.kwarg or args.posonlyargs or args.kwonlyargs or args.defaults:
        raise HeaderError(f"task `{task}`: outputs are `name: type` pairs without defaults")
    outs = []
    for arg in args.args:
        if arg.annotation is None:
            raise HeaderError(f"task `{task}`: output `{arg.arg}` has no type; write `{arg.arg}: TYPE`")
        outs.append((arg.arg, _segment(text, arg.annotation)))
    return tuple(outs)


def parse_duration(text: str) -> float:
    """`90`, `30s`, `10m`, `2h`, `500ms` -> seconds; raise ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


_NO_OPTIONS = TaskOptions()


def _parse_options(task: str, text: str, inputs: set[str]) -> TaskOptions:
    if not text:
        return _NO_OPTIONS
    try:
        # shlex only when quoting is used; plain options split on whitespace much faster
        tokens = shlex.split(text) if any(c in text for c in "'\"\\") else text.split()
    except ValueError as exc:
        raise HeaderError(f"task `{task}`: cannot read the options `{text}`: {exc}") from None
    values: dict[str, Any] = {}
    env: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        opt = tokens[i]
        if opt in _FLAG_OPTIONS:
            values["cache"] = True
            i += 1
            continue
        if opt not in _VALUE_OPTIONS:
            known = ", ".join(sorted(_FLAG_OPTIONS | _VALUE_OPTIONS))
            raise HeaderError(f"task `{task}`: unknown option `{opt}`; options are {known}")
        if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
            raise HeaderError(f"task `{task}`: option `{opt}` needs a value")
        value = tokens[i + 1]
        i += 2
        key = opt[2:].replace("-", "_")
        if opt == "--env":
            k, sep, v = value.partition("=")
            if not sep or not _IDENT.fullmatch(k):
                raise HeaderError(f"task `{task}`: `--env {value}` must read `--env NAME=VALUE`")
            env.append((k, v))
            continue
        if key in values:
            raise HeaderError(f"task `{task}`: option `{opt}` is given twice")
        values[key] = _option_value(task, opt, value, inputs)
    if env:
        values["env"] = tuple(env)
    if "timeout" in values:
        values["timeout_s"] = values.pop("timeout")
    if "batch" in values and "map_over" not in values:
        raise HeaderError(f"task `{task}`: `--batch {values['batch']}` needs `--map-over`: only a map-over task's "
                          "elements run in batches")
    return TaskOptions(**values)


def _option_value(task: str, opt: str, value: str, inputs: set[str]) -> Any:
    bad = f"task `{task}`: `{opt} {value}`"
    if opt == "--cpu":
        try:
            cpu = float(value)
        except ValueError:
            raise HeaderError(f"{bad}: CPU count must be a positive number like 2 or 0.5") from None
        if not math.isfinite(cpu) or cpu <= 0:  # float() also reads nan and inf
            raise HeaderError(f"{bad}: CPU count must be a positive number like 2 or 0.5")
        return int(cpu) if cpu.is_integer() else cpu
    if opt == "--batch":
        if not _WHOLE.match(value) or int(value) < 1:
            raise HeaderError(f"{bad}: the number of elements per kernel must be a whole number >= 1")
        return int(value)
    if opt in ("--gpu", "--retries"):
        if not _WHOLE.match(value):  # not str.isdigit: it accepts `²`, which int() then refuses
            raise HeaderError(f"{bad}: must be a whole number >= 0")
        return int(value)
    if opt == "--mem":
        if not _MEM.match(value):
            raise HeaderError(f"{bad}: memory must read like 512Mi, 4Gi or 2G")
        if memory_bytes(value) < 1:
            raise HeaderError(f"{bad}: memory must be at least one byte, like 512Mi, 4Gi or 2G")
        return value
    if opt == "--timeout":
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise HeaderError(f"{bad}: a timeout reads like 90, 30s, 10m or 2h") from None
        if seconds <= 0:
            raise HeaderError(f"{bad}: a timeout must be longer than zero")
        return seconds
    if opt == "--map-over":
        if value not in inputs:
            raise HeaderError(f"{bad}: `{value}` is not an input of `{task}`")
        return value
    if opt == "--image" and (not value or any(c.isspace() for c in value)):
        raise HeaderError(f"{bad}: an image reads like REPO:TAG")
    return value


def memory_bytes(text: str) -> float:
    """`4Gi` -> bytes, for Dask's MEMORY resource."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "k": 1e3, "M": 1e6,
             "G": 1e9, "T": 1e12, "B": 1, None: 1}
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|k|M|G|T|B)?$", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * units[match.group(2)]


def format_header(spec: HeaderSpec) -> str:
    """Render a header back to text (the inverse of `parse_header`, on one line)."""
    ins = []
    for name, ann, has_default, default in spec.inputs:
        ins.append(f"{name}: {ann}" + (f" = {default!r}" if has_default else ""))
    text = f"{TASK_MAGIC} {spec.name}({', '.join(ins)})"
    if spec.outputs:
        text += " -> (" + ", ".join(f"{n}: {t}" for n, t in spec.outputs) + ")"
    opts = spec.options
    parts: list[str] = []
    for key in ("cpu", "mem", "gpu"):
        if getattr(opts, key) is not None:
            parts += [f"--{key}", str(getattr(opts, key))]
    if opts.retries:
        parts += ["--retries", str(opts.retries)]
    if opts.timeout_s is not None:
        parts += ["--timeout", f"{opts.timeout_s:g}s"]
    if opts.cache:
        parts.append("--cache")
    if opts.cache_version is not None:
        parts += ["--cache-version", opts.cache_version]
    if opts.image is not None:
        parts += ["--image", opts.image]
    for k, v in opts.env:
        parts += ["--env", f"{k}={v}"]
    if opts.map_over is not None:
        parts += ["--map-over", opts.map_over]
    if opts.batch is not None:
        parts += ["--batch", str(opts.batch)]
    if parts:
        text += " " + " ".join(shlex.quote(p) for p in parts)
    return text
