"""The kernel magics in a real IPython shell, and the run-time value checks behind them."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.utils.capture import capture_output
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from flyte_lab import magics
from flyte_lab.graph.value_checks import check_value, describe, type_error_message

SETUP = """\
import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame, Series
from typing import Optional

class Raw(pa.DataFrameModel):
    x: Series[float]
"""


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance(config=config)
    assert sh.run_cell("%load_ext flyte_lab").success
    try:
        yield sh
    finally:
        sh.history_manager.end_session()
        InteractiveShell.clear_instance()


@pytest.fixture
def setup_shell(shell: InteractiveShell) -> InteractiveShell:
    shell.run_cell_magic("flyte_setup", "", SETUP)
    return shell


def task(sh: InteractiveShell, header: str, body: str) -> None:
    """Run a task cell the way IPython does: first line as `line`, the rest as `cell`."""
    sh.run_cell_magic("flyte_task", header, body)


# -- %%flyte_setup --------------------------------------------------------------------------------

def test_setup_runs_in_user_namespace_with_ipython_syntax(shell: InteractiveShell, tmp_path: Path) -> None:
    shell.run_cell_magic("flyte_setup", "", "import math\nhere = %pwd\nroot = math.sqrt(16)")
    assert shell.user_ns["root"] == 4.0
    assert shell.user_ns["here"] == str(tmp_path)


def test_setup_failure_is_a_usage_error(shell: InteractiveShell) -> None:
    with capture_output():
        with pytest.raises(UsageError, match="ZeroDivisionError"):
            shell.run_cell_magic("flyte_setup", "", "1 / 0")


# -- %%flyte_task: passing cells ------------------------------------------------------------------

def test_task_runs_body_and_keeps_outputs(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns.update(n=3, seed=1)
    task(setup_shell, "make(n: int, seed: int) -> (raw: pd.DataFrame, total: float)",
         "raw = pd.DataFrame({'x': [float(seed)] * n})\ntotal = float(raw.x.sum())")
    assert setup_shell.user_ns["total"] == 3.0
    assert len(setup_shell.user_ns["raw"]) == 3


def test_continued_header_through_run_cell(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["a"] = 2
    cell = "%%flyte_task power(a: int, \\\n      k: int = 3) -> \\\n  p: int\np = a ** k"
    result = setup_shell.run_cell(cell)
    assert result.success, result.error_in_exec
    assert setup_shell.user_ns["p"] == 8


def test_default_is_applied_when_input_is_missing(setup_shell: InteractiveShell) -> None:
    task(setup_shell, "scale(lr: float = 0.5, tag: Optional[str] = None) -> out: float", "out = lr * 2")
    assert setup_shell.user_ns["lr"] == 0.5
    assert setup_shell.user_ns["tag"] is None
    assert setup_shell.user_ns["out"] == 1.0


def test_defaults_do_not_leak_when_another_input_fails(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["x"] = "bad"
    with pytest.raises(UsageError, match="input `x` is declared `int`"):
        task(setup_shell, "f(lr: float = 0.5, x: int = 1) -> out: float", "out = lr")
    assert "lr" not in setup_shell.user_ns


def test_kernel_value_wins_over_default(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["lr"] = 0.25
    task(setup_shell, "scale(lr: float = 0.5) -> out: float", "out = lr * 2")
    assert setup_shell.user_ns["out"] == 0.5


def test_task_without_outputs(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["msg"] = "hi"
    with capture_output() as cap:
        task(setup_shell, "show(msg: str)", "print(msg.upper())")
    assert "HI" in cap.stdout


# -- %%flyte_task: input checks -------------------------------------------------------------------

def test_input_of_wrong_type_names_both_types(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["x"] = "abc"
    with pytest.raises(UsageError) as info:
        task(setup_shell, "double(x: int) -> y: int", "y = x * 2")
    assert str(info.value) == "task `double`: input `x` is declared `int` but the value is `str` ('abc')"
    assert "y" not in setup_shell.user_ns  # the body never ran


def test_no_silent_int_to_float(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["lr"] = 1
    with pytest.raises(UsageError, match=r"input `lr` is declared `float` but the value is `int` \(1\)"):
        task(setup_shell, "fit(lr: float) -> r: float", "r = lr")


def test_generic_input_names_the_bad_element(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["coef"] = [1.0, "2", 3.0]
    with pytest.raises(UsageError, match=r"declared `list\[float\]` but `coef\[1\]` is `str` \('2'\)"):
        task(setup_shell, "use(coef: list[float]) -> s: float", "s = sum(coef)")


def test_missing_input_says_what_to_do(setup_shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"input `raw: pd.DataFrame` is not defined in this kernel; run the"):
        task(setup_shell, "fit(raw: pd.DataFrame) -> r: float", "r = 1.0")


def test_unknown_type_name_points_to_setup(shell: InteractiveShell) -> None:
    shell.user_ns["raw"] = 1
    with pytest.raises(UsageError) as info:
        task(shell, "fit(raw: pd.DataFrame) -> r: float", "r = 1.0")
    assert str(info.value) == ("unknown type name `pd` in input `raw` of task `fit`; run the %%flyte_setup "
                               "cell that imports it")


def test_bad_header_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="unknown option `--fast`"):
        task(shell, "fit(a: int) -> b: int --fast", "b = a")


def test_pandera_schema_violation(setup_shell: InteractiveShell) -> None:
    setup_shell.run_cell("raw = pd.DataFrame({'y': [1.0]})")
    with pytest.raises(UsageError) as info:
        task(setup_shell, "fit(raw: DataFrame[Raw]) -> r: float", "r = 1.0")
    message = str(info.value)
    assert message.startswith("task `fit`: input `raw` is declared `DataFrame[Raw]` but the value does not "
                              "match schema `Raw`:")
    assert "'x'" in message


def test_pandera_schema_accepts_valid_frame(setup_shell: InteractiveShell) -> None:
    setup_shell.run_cell("raw = pd.DataFrame({'x': [1.0, 2.0]})")
    task(setup_shell, "fit(raw: DataFrame[Raw]) -> (clean: DataFrame[Raw], r: float)",
         "clean = raw\nr = float(raw.x.mean())")
    assert setup_shell.user_ns["r"] == 1.5


# -- %%flyte_task: output checks ------------------------------------------------------------------

def test_missing_output(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["r2"] = 0.5  # a stale value from an earlier run must not pass for a new one
    with pytest.raises(UsageError) as info:
        task(setup_shell, "fit() -> (coef: list[float], r2: float)", "coef = [1.0]")
    assert str(info.value) == "task `fit`: output `r2: float` was not assigned by the body"


def test_wrong_output_type(setup_shell: InteractiveShell) -> None:
    with pytest.raises(UsageError) as info:
        task(setup_shell, "fit() -> r2: float", "r2 = 3")
    assert str(info.value) == "task `fit`: output `r2` is declared `float` but the value is `int` (3)"


def test_body_error_stops_before_output_checks(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["r2"] = 0.5
    with capture_output() as cap:
        with pytest.raises(UsageError, match=r"body raised `ZeroDivisionError` \(traceback above\)"):
            task(setup_shell, "fit() -> r2: float", "a = 1\nr2 = 1 / 0")
    shown = re.sub(r"\x1b\[[0-9;]*m", "", cap.stdout)  # drop colours
    assert "ZeroDivisionError" in shown
    assert "line 3" in shown  # the header is line 1, as Jupyter numbers the cell
    assert setup_shell.user_ns["r2"] == 0.5  # not reached: the old value stays


def test_a_fixed_cell_says_its_outputs_passed(setup_shell: InteractiveShell) -> None:
    with capture_output() as cap, pytest.raises(UsageError):
        task(setup_shell, "fit(k: int = 0) -> model: str, r2: float", "model = 'm'\nr2 = 1 / k")
    assert "passed the checks" not in cap.stdout  # failed: no such line
    with capture_output() as cap:  # fixed and run again
        task(setup_shell, "fit(k: int = 0) -> model: str, r2: float", "model = 'm'\nr2 = 1 / (k + 1)")
    assert cap.stdout == "fit: outputs passed the checks (model: str, r2: float)\n"
    with capture_output() as cap, pytest.raises(UsageError):  # an output check that fails says nothing of passing
        task(setup_shell, "fit() -> r2: float", "r2 = 3")
    assert cap.stdout == ""


def test_a_mapped_cell_says_its_outputs_passed_for_each_element(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["xs"] = [1, 2, 3]
    with capture_output() as cap:
        task(setup_shell, "square(xs: int) -> sq: int --map-over xs", "sq = xs ** 2")
    assert cap.stdout == "square: outputs passed the checks (sq: int) for each of its 3 elements\n"


# -- --map-over -----------------------------------------------------------------------------------

def test_map_over_runs_body_per_element(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["xs"] = [1, 2, 3]
    task(setup_shell, "square(xs: int, k: int = 2) -> sq: int --map-over xs", "sq = xs ** k")
    assert setup_shell.user_ns["sq"] == [1, 4, 9]
    assert setup_shell.user_ns["xs"] == [1, 2, 3]


def test_map_over_requires_a_list(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["xs"] = 5
    with pytest.raises(UsageError, match=r"input `xs` is declared `list\[int\]` but the value is `int` \(5"):
        task(setup_shell, "square(xs: int) -> sq: int --map-over xs", "sq = xs * xs")


def test_map_over_checks_elements(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["xs"] = [1, "b"]
    with pytest.raises(UsageError, match=r"`xs\[1\]` is `str` \('b'\)"):
        task(setup_shell, "square(xs: int) -> sq: int --map-over xs", "sq = xs * xs")


def test_map_over_output_error_names_the_element(setup_shell: InteractiveShell) -> None:
    setup_shell.user_ns["xs"] = [2, 0]
    with pytest.raises(UsageError, match=r"output `inv` is declared `float` but the value is `int` \(0\) "
                                         r"\(for `xs\[1\]`\)"):
        task(setup_shell, "inverse(xs: int) -> inv: float --map-over xs", "inv = 1 / xs if xs else 0")
    assert setup_shell.user_ns["xs"] == [2, 0]
    assert "inv" not in setup_shell.user_ns


# -- %flyte_graph ---------------------------------------------------------------------------------

def write_notebook(path: Path) -> Path:
    nb = new_notebook(cells=[
        new_code_cell("%%flyte_setup\nimport pandas as pd"),
        new_code_cell("%%flyte_task make_data(n: int = 3) -> raw: pd.DataFrame\n"
                      "raw = pd.DataFrame({'x': [1] * n})"),
        new_code_cell("%%flyte_task summarise(raw: pd.DataFrame) -> total: str\ntotal = raw.x.sum()"),
        new_code_cell("%%flyte_task report(total: int)\nprint(total)"),
    ])
    nbformat.write(nb, path)
    return path


def test_flyte_graph_displays_tasks_and_diagnostics(shell: InteractiveShell, tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "pipe.ipynb")
    with capture_output() as cap:
        assert shell.run_line_magic("flyte_graph", str(path)) is None
    html = cap.outputs[0].data["text/html"]
    for name in ("make_data", "summarise", "report"):
        assert f'data-task="{name}"' in html
    assert "<svg" in html
    assert "type-mismatch" in html


def test_flyte_graph_defaults_to_session_notebook(shell: InteractiveShell, tmp_path: Path) -> None:
    write_notebook(tmp_path / "pipe.ipynb")
    shell.user_ns["__session__"] = "/some/server/root/pipe.ipynb"  # kernel cwd is the notebook's folder
    with capture_output() as cap:
        shell.run_line_magic("flyte_graph", "")
    assert 'data-task="make_data"' in cap.outputs[0].data["text/html"]


def test_flyte_graph_without_a_known_notebook(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="pass the path"):
        shell.run_line_magic("flyte_graph", "")


def test_flyte_graph_missing_file(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"no notebook at `nope\.ipynb`"):
        shell.run_line_magic("flyte_graph", "nope.ipynb")


@magics_class
class _ExtraMagics(Magics):
    @line_magic
    def flyte_extra(self, line: str) -> str:
        return f"extra {line}"


def test_extra_magic_classes_register(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(magics, "MAGIC_CLASSES", [*magics.MAGIC_CLASSES, f"{__name__}:_ExtraMagics"])
    magics.register(shell)
    assert shell.run_line_magic("flyte_extra", "ok") == "extra ok"


# -- graph.value_checks, without a shell ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "annotation"), [
    (1, int), (1.5, float), ("s", str), (3, int | None), ([1.0, 2.0], list[float]),
    (None, Optional[int]),  # noqa: UP045 - typing.Union is a different origin from `int | None`
    (None, int | None),
    ({"a": 1}, dict[str, int]), ((1, "a"), tuple[int, str]), ((1, 2, 3), tuple[int, ...]), ({1, 2}, set[int]),
    ([], list[int]), ("b", typing.Literal["a", "b"]), (object(), Any), ([[1], [2]], list[list[int]]),
])
def test_check_value_accepts(value: Any, annotation: Any) -> None:
    assert check_value(value, annotation, "v") is None


@pytest.mark.parametrize(("value", "annotation", "reason"), [
    (True, int, "the value is `bool` (True)"),
    (2, float, "the value is `int` (2)"),
    ("x", Optional[int], "the value is `str` ('x')"),  # noqa: UP045 - typing.Union, on purpose
    ("x", int | None, "the value is `str` ('x')"),
    ([1.0, 2], list[float], "`v[1]` is `int` (2)"),
    ({"a": "b"}, dict[str, int], "`v['a']` is `str` ('b')"),
    ({1: 2}, dict[str, int], "key 1 of `v` is `int`"),
    ((1, 2), tuple[int, str], "`v[1]` is `int` (2)"),
    ((1,), tuple[int, str], "the value is `tuple` ((1,)) with 1 items, not 2"),
    ([[1], ["a"]], list[list[int]], "`v[1][0]` is `str` ('a')"),
    ({"s"}, set[int], "an item of `v` is `str` ('s')"),
    ("abc", list[str], "the value is `str` ('abc')"),
])
def test_check_value_reasons(value: Any, annotation: Any, reason: str) -> None:
    assert check_value(value, annotation, "v") == reason


def test_message_and_long_values() -> None:
    assert describe("x" * 100).endswith("…')") or describe("x" * 100).endswith("…)")
    assert type_error_message("t", "input", "x", "int", "the value is `str` ('a')") == (
        "task `t`: input `x` is declared `int` but the value is `str` ('a')")


def test_value_checks_import_only_the_stdlib() -> None:
    """Task kernels import the checks at start: they must pull in neither IPython, typeguard nor pandera."""
    probe = ("import sys; before = set(sys.modules); import flyte_lab.graph.value_checks; "
             "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before}"
             " - set(sys.stdlib_module_names))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["flyte_lab"], done.stdout
