"""The `%%flyte_task` header grammar: examples plus hypothesis round-trips and junk."""

from __future__ import annotations

import keyword
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyte_lab.errors import HeaderError
from flyte_lab.graph.header import format_header, parse_header
from flyte_lab.graph.model import HeaderSpec, TaskOptions


def test_design_example() -> None:
    spec = parse_header("%%flyte_task fit(raw: pd.DataFrame, lr: float = 0.1) -> (coef: list[float], r2: float) "
                        "--cpu 2 --mem 4Gi --retries 3 --cache")
    assert spec.name == "fit"
    assert spec.inputs == (("raw", "pd.DataFrame", False, None), ("lr", "float", True, 0.1))
    assert spec.outputs == (("coef", "list[float]"), ("r2", "float"))
    assert spec.options == TaskOptions(cpu=2, mem="4Gi", retries=3, cache=True)


@pytest.mark.parametrize("header", [
    "%%flyte_task t()", "%%flyte_task t() -> None", "%%flyte_task t()->None", "%%flyte_task t() -> ()",
])
def test_no_outputs(header: str) -> None:
    assert parse_header(header).outputs == ()


def test_outputs_without_parentheses() -> None:
    assert parse_header("%%flyte_task t() -> a: int, b: dict[str, list[int]]").outputs == (
        ("a", "int"), ("b", "dict[str, list[int]]"))


def test_backslash_continuation_spans_lines() -> None:
    spec = parse_header("%%flyte_task t(a: int,\\\n     b: str = 'x') \\\n  -> c: int --retries 2\nc = a")
    assert spec.header_lines == 3
    assert [i[0] for i in spec.inputs] == ["a", "b"] and spec.options.retries == 2


def test_tricky_defaults_do_not_confuse_the_splitter() -> None:
    spec = parse_header('%%flyte_task t(a: str = "-> x --cpu 3", b: dict = {"k": (1, 2)}) -> y: int --cache')
    assert spec.inputs[0][3] == "-> x --cpu 3" and spec.inputs[1][3] == {"k": (1, 2)}
    assert spec.options == TaskOptions(cache=True)


def test_every_option() -> None:
    spec = parse_header("%%flyte_task t(xs: int) -> y: int --cpu 0.5 --mem 512Mi --gpu 1 --retries 2 --timeout 10m "
                        "--cache --cache-version v2 --image repo/img:1.0 --env A=1 --env B=two --map-over xs")
    assert spec.options == TaskOptions(cpu=0.5, mem="512Mi", gpu=1, retries=2, timeout_s=600.0, cache=True,
                                       cache_version="v2", image="repo/img:1.0", env=(("A", "1"), ("B", "two")),
                                       map_over="xs")


@pytest.mark.parametrize(("header", "fragment"), [
    ("%%flyte_task t(a) -> b: int", "has no type"),
    ("%%flyte_task t(a: int = len('x')) -> b: int", "must be a literal"),
    ("%%flyte_task t(*a: int)", "*args"),
    ("%%flyte_task t() -> b: int --cpu lots", "CPU count"),
    ("%%flyte_task t() -> b: int --mem huge", "memory"),
    ("%%flyte_task t() -> b: int --timeout soon", "timeout"),
    ("%%flyte_task t() -> b: int --retries", "needs a value"),
    ("%%flyte_task t() -> b: int --map-over zz", "not an input"),
    ("%%flyte_task t(a: int) -> a: int", "both an input and an output"),
    ("%%flyte_task t() -> b: int --cpu 1 --cpu 2", "given twice"),
    ("%%flyte_task 9t()", "task name"),
    ("%%flyte_task t(", "closing"),
    ("%%flyte_task t() => b: int", "expected"),
    ("%%flyte_task t() -> b", "has no type"),
    ("%%flyte_task t() -> b: int --env novalue", "NAME=VALUE"),
])
def test_bad_headers_say_what_is_wrong(header: str, fragment: str) -> None:
    with pytest.raises(HeaderError, match=None) as info:
        parse_header(header)
    assert fragment in info.value.message


def _ident() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))


_types = st.recursive(
    st.sampled_from(["int", "float", "str", "bool", "pd.DataFrame", "np.ndarray", "Any", "None"]),
    lambda inner: st.one_of(
        st.builds(lambda t: f"list[{t}]", inner),
        st.builds(lambda k, v: f"dict[{k}, {v}]", st.sampled_from(["str", "int"]), inner),
        st.builds(lambda t: f"Optional[{t}]", inner),
        st.builds(lambda a, b: f"tuple[{a}, {b}]", inner, inner),
    ),
    max_leaves=4,
)
_defaults = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=12), st.booleans(), st.none(),
                      st.lists(st.integers(0, 9), max_size=3))


@st.composite
def headers(draw: st.DrawFn) -> HeaderSpec:
    names = draw(st.lists(_ident(), min_size=0, max_size=8, unique=True))
    split = draw(st.integers(0, len(names)))
    inputs = []
    defaults_started = False
    for name in names[:split]:
        has_default = draw(st.booleans()) or defaults_started
        defaults_started = has_default
        inputs.append((name, draw(_types), has_default, draw(_defaults) if has_default else None))
    outputs = tuple((name, draw(_types)) for name in names[split:])
    options = TaskOptions(
        cpu=draw(st.one_of(st.none(), st.integers(1, 64))),
        mem=draw(st.one_of(st.none(), st.sampled_from(["512Mi", "4Gi", "2G"]))),
        gpu=draw(st.one_of(st.none(), st.integers(0, 8))),
        retries=draw(st.integers(0, 5)),
        timeout_s=draw(st.one_of(st.none(), st.integers(1, 10**5).map(float))),
        cache=draw(st.booleans()),
        cache_version=draw(st.one_of(st.none(), st.from_regex(r"[a-z0-9.]{1,6}", fullmatch=True))),
        env=tuple(draw(st.lists(st.tuples(st.from_regex(r"[A-Z][A-Z0-9_]{0,5}", fullmatch=True),
                                          st.text(string.ascii_letters + string.digits + " =:/", max_size=8)),
                                max_size=2))),
        map_over=draw(st.one_of(st.none(), st.sampled_from([i[0] for i in inputs]))) if inputs else None,
    )
    return HeaderSpec(name=draw(_ident()), inputs=tuple(inputs), outputs=outputs, options=options, header_lines=1)


@settings(max_examples=300, deadline=None)
@given(headers())
def test_random_valid_headers_round_trip(spec: HeaderSpec) -> None:
    assert parse_header(format_header(spec)) == spec


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_random_junk_is_a_header_error_never_a_crash(junk: str) -> None:
    try:
        parse_header("%%flyte_task " + junk)
    except HeaderError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="(),:->[]=' \"\\-abcxyz019", max_size=60))
def test_structured_junk_is_a_header_error_never_a_crash(junk: str) -> None:
    try:
        parse_header("%%flyte_task t" + junk)
    except HeaderError:
        pass


@settings(max_examples=300, deadline=None)
@given(headers())
def test_the_fast_path_agrees_with_the_ast_path(spec: HeaderSpec) -> None:
    from flyte_lab.graph.header import _parse_inputs, _simple_params

    text = format_header(spec)
    inputs_text = text[text.index("(") + 1:text.index(")")] if "->" not in text.split(")")[0] else ""
    fast = _simple_params(inputs_text, defaults=True)
    if fast is not None:
        assert fast == _parse_inputs(spec.name, inputs_text, None)


_number_texts = st.from_regex(r"-?[0-9][0-9_.eE+-]{0,5}", fullmatch=True) | st.sampled_from(
    ["007", "00", "0", "-0", "08.5", "1_000", "1e5", "1.", ".5", "0x1f", "1e", "-007", "0.0e-0"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_ident(), st.sampled_from(["int", "float", "list[int]", "Optional[int]"]),
                          st.one_of(st.none(), _number_texts)), min_size=1, max_size=3, unique_by=lambda p: p[0]))
def test_the_fast_path_agrees_with_the_ast_path_on_raw_literals(params: list) -> None:
    """Whatever literal text a default holds, the fast path either gives exactly what `ast` gives, or
    stands aside (None) so the `ast` path words the refusal: `007` is refused by both, the same way."""
    from flyte_lab.graph.header import _parse_inputs, _simple_params

    text = ", ".join(f"{n}: {t}" + ("" if d is None else f" = {d}") for n, t, d in params)
    fast = _simple_params(text, defaults=True)
    try:
        slow = _parse_inputs("t", text, None)
    except HeaderError as exc:
        assert fast is None, f"fast path accepted {text!r}, which ast refuses: {exc.message}"
        with pytest.raises(HeaderError) as whole:
            parse_header(f"%%flyte_task t({text})")
        assert whole.value.message == exc.message
        return
    if fast is not None:
        assert fast == slow
        assert [type(v) for *_x, v in fast] == [type(v) for *_x, v in slow]


@pytest.mark.parametrize("literal", ["007", "-007", "1_0x", "0b2"])
def test_literals_python_refuses_are_refused(literal: str) -> None:
    with pytest.raises(HeaderError, match="not a valid parameter list"):
        parse_header(f"%%flyte_task t(a: int = {literal}) -> b: int")
