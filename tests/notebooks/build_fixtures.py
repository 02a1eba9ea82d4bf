"""Regenerate the notebook fixtures: `python tests/notebooks/build_fixtures.py`.

Each fixture is named by the behaviour it shows; `EXPECTED` in
tests/test_diagnostics.py lists the diagnostic each must produce.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
SETUP = "%%flyte_setup\nimport pandas as pd\nimport numpy as np\n"
# a class with no codec (it travels by cloudpickle) whose unpickling appends, to the file `marks`, which process
# loaded it: its pid and, in a kernel, its IPython shell's class
MARKER_SETUP = (
    "%%flyte_setup\n"
    "def _loaded_marker(value, marks):\n"
    "    import json, os, sys\n"
    "    ipython = sys.modules.get('IPython')\n"
    "    shell = ipython.get_ipython() if ipython is not None else None\n"
    "    with open(marks, 'a') as fh:\n"
    "        fh.write(json.dumps({'pid': os.getpid(), 'shell': type(shell).__name__ if shell else None,\n"
    "                             'argv': sys.argv[:3]}) + '\\n')\n"
    "    import __main__  # the loading kernel's own Marker: a by-value copy of the class would fail its type check\n"
    "    return getattr(__main__, 'Marker', Marker)(value, marks)\n"
    "\n"
    "class Marker:\n"
    "    def __init__(self, value, marks):\n"
    "        self.value, self.marks = value, marks\n"
    "\n"
    "    def __reduce__(self):\n"
    "        return (_loaded_marker, (self.value, self.marks))\n"
)
MAKE_MARKERS = "%%flyte_task make(marks: str, n: int) -> items: list[Marker] --cache\nitems = [Marker(i, marks) for i in range(n)]"


def params(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def write(name: str, *cells: nbformat.NotebookNode | str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [c if not isinstance(c, str) else new_code_cell(c) for c in cells]
    nbformat.write(nb, HERE / f"{name}.ipynb")


FIXTURES = {
    "valid_pipeline": [
        new_markdown_cell("# A valid pipeline"), "%load_ext flyte_lab", SETUP, params("n = 10\nseed = 3"),
        "%%flyte_task make(n: int, seed: int) -> raw: pd.DataFrame\n"
        "raw = pd.DataFrame({'x': np.random.default_rng(seed).normal(size=n)})",
        "%%flyte_task stats(raw: pd.DataFrame) -> (mean: float, count: int)\n"
        "mean = float(raw['x'].mean())\ncount = len(raw)",
    ],
    "type_mismatch": [
        SETUP, "%%flyte_task produce() -> count: str\ncount = '3'",
        "%%flyte_task consume(count: int) -> None\nprint(count)",
    ],
    "int_to_float_mismatch": [
        SETUP, "%%flyte_task produce() -> x: int\nx = 1", "%%flyte_task consume(x: float) -> None\nprint(x)",
    ],
    "optional_output_to_plain_input": [
        SETUP, "%%flyte_task produce() -> x: int | None\nx = None",
        "%%flyte_task consume(x: int) -> None\nprint(x)",
    ],
    "schema_columns_mismatch": [
        "%%flyte_setup\nimport pandera as pa\nfrom pandera.typing import DataFrame, Series\n"
        "class Raw(pa.DataFrameModel):\n    x: Series[float]\n"
        "class Features(pa.DataFrameModel):\n    x: Series[float]\n    x2: Series[float]\n",
        "%%flyte_task make() -> frame: DataFrame[Raw]\nimport pandas as pd\nframe = pd.DataFrame({'x': [1.0]})",
        "%%flyte_task use(frame: DataFrame[Features]) -> None\nprint(frame)",
    ],
    "cycle": [
        "%%flyte_task alpha(b: int) -> a: int\na = b + 1", "%%flyte_task beta(a: int) -> b: int\nb = a + 1",
    ],
    "duplicate_output": [
        "%%flyte_task one() -> x: int\nx = 1", "%%flyte_task two() -> x: int\nx = 2",
    ],
    "missing_input": [
        "%%flyte_task needs(threshold: float) -> None\nprint(threshold)",
    ],
    "unassigned_output": [
        "%%flyte_task fit() -> (coef: float, r2: float)\ncoef = 1.0\ndef helper():\n    r2 = 0.5\n",
    ],
    "undefined_name": [
        "%%flyte_task clean() -> y: int\ny = undefined_thing + 1",
    ],
    "hidden_state_from_exploration": [
        SETUP, "threshold = 0.5  # set while exploring",
        "%%flyte_task clean() -> y: float\ny = threshold * 2",
    ],
    "bad_header_unknown_option": [
        "%%flyte_task t() -> x: int --gpus 2\nx = 1",
    ],
    "bad_header_unknown_type": [
        "%%flyte_task t() -> x: Frobnicator\nx = 1",
    ],
    "bad_header_syntax": [
        "%%flyte_task t(x int) -> y: int\ny = 1",
    ],
    "duplicate_task_name": [
        "%%flyte_task t() -> x: int\nx = 1", "%%flyte_task t() -> y: int\ny = 1",
    ],
    "body_syntax_error": [
        "%%flyte_task t() -> x: int\nx = (1 +",
    ],
    "pickled_class_output": [
        "%%flyte_setup\nclass Model:\n    pass\n", "%%flyte_task t() -> m: Model\nm = Model()",
    ],
    "map_over": [
        SETUP, params("items = [1, 2, 3]"),
        "%%flyte_task square(items: int) -> sq: int --map-over items\nsq = items * items",
        "%%flyte_task total(sq: list[int]) -> s: int\ns = sum(sq)",
    ],
    # one task holds a secret while another reads every /proc/PID/{environ,cmdline,mem} its user may read
    # (tests/test_secret_isolation.py); the secret starts with a known prefix, spelled in two pieces here so
    # that this notebook's own text never matches
    "proc_scan_for_secret": [
        "%%flyte_setup\nimport hashlib\nimport os\nimport time\nfrom pathlib import Path",
        params("marks = ''\ntoken_sha256 = ''"),
        "%%flyte_task hold_secret(marks: str, token_sha256: str) -> token_seen: bool --env TOKEN=$FLYTE_TEST_SECRET\n"
        "Path(marks, 'holding').write_text(str(os.getpid()))\n"
        "deadline = time.monotonic() + 120\n"
        "while not Path(marks, 'scanned').exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "token_seen = hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest() == token_sha256",
        "%%flyte_task scan_proc(marks: str) -> hits: list[str]\n"
        "deadline = time.monotonic() + 120\n"
        "while not Path(marks, 'holding').exists():\n"
        "    if time.monotonic() > deadline:\n"
        "        raise TimeoutError('the task holding the secret never started')\n"
        "    time.sleep(0.1)\n"
        "needle = ('flyte-lab-' + 'secret-').encode()\n"
        "\n"
        "def found_in_memory(pid):\n"
        "    regions = Path(f'/proc/{pid}/maps').read_text().splitlines()\n"
        "    with open(f'/proc/{pid}/mem', 'rb', buffering=0) as mem:\n"
        "        for region in regions:\n"
        "            span, perms = region.split()[:2]\n"
        "            if 'rw' not in perms:  # a secret lives in writable memory: heap, stack, anonymous maps\n"
        "                continue\n"
        "            start, end = (int(x, 16) for x in span.split('-'))\n"
        "            tail = b''\n"
        "            for at in range(start, end, 1 << 22):\n"
        "                try:\n"
        "                    mem.seek(at)\n"
        "                    chunk = tail + mem.read(min(1 << 22, end - at))\n"
        "                except OSError:\n"
        "                    break\n"
        "                if needle in chunk:\n"
        "                    return True\n"
        "                tail = chunk[-len(needle):]\n"
        "    return False\n"
        "\n"
        "hits = []\n"
        "for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):\n"
        "    if pid == os.getpid():\n"
        "        continue\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            if needle in Path(f'/proc/{pid}/{name}').read_bytes():\n"
        "                hits.append(f'{pid} {name}')\n"
        "        except OSError:\n"
        "            pass\n"
        "    try:\n"
        "        if found_in_memory(pid):\n"
        "            hits.append(f'{pid} mem')\n"
        "    except OSError:\n"
        "        pass\n"
        "Path(marks, 'scanned').touch()",
    ],
    # `make` caches its list as one pickle: no map-over reads it here
    "pickled_marker_list": [
        MARKER_SETUP, params("marks = ''\nn = 3"), MAKE_MARKERS,
        "%%flyte_task count(items: list[Marker]) -> k: int\nk = len(items)",
    ],
    # the same `make` (same cache key), its list mapped over
    "map_over_pickled_marker": [
        MARKER_SETUP, params("marks = ''\nn = 3"), MAKE_MARKERS,
        "%%flyte_task double(items: Marker) -> doubled: int --map-over items\ndoubled = items.value * 2",
        "%%flyte_task total(doubled: list[int]) -> s: int\ns = sum(doubled)",
    ],
    "html_output_xss": [
        "%%flyte_setup\nfrom IPython.display import HTML, SVG, Javascript, Markdown, display\n",
        # every way a task's output could carry script; each would record itself in window.__pwned
        "%%flyte_task report() -> None\n"
        "mark = \"(window.__pwned = window.__pwned || []).push('{}')\"\n"
        "display(HTML('<b class=\"harmless\">harmless bold text</b>'\n"
        "             '<table class=\"harmless\"><thead><tr><th>metric</th></tr></thead>'\n"
        "             '<tbody><tr><td>forty-two</td></tr></tbody></table>'\n"
        "             f'<img src=x onerror=\"{mark.format(\"img\")}\">'\n"
        "             f'<script>{mark.format(\"script\")}</script>'\n"
        "             f'<svg onload=\"{mark.format(\"svg\")}\"></svg>'\n"
        "             f'<details open ontoggle=\"{mark.format(\"details\")}\">details</details>'\n"
        "             f'<a class=\"js-link\" href=\"javascript:{mark.format(\"link\")}\">a javascript: link</a>'\n"
        "             f'<iframe srcdoc=\"<script>{mark.format(\"iframe\")}</script>\"></iframe>'\n"
        "             '<style>b { display: none }</style>'))\n"
        "display(Javascript(mark.format('javascript')))\n"
        "display(SVG(f'<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"{mark.format(\"svg-output\")}\">'\n"
        "            '<rect width=\"4\" height=\"4\"/></svg>'))\n"
        "display(Markdown(f'<img src=y onerror=\"{mark.format(\"markdown\")}\">'))\n"
        "print(f'<img src=x onerror=\"{mark.format(\"stdout\")}\">')\n"
        "raise RuntimeError(f'<img src=x onerror=\"{mark.format(\"error\")}\">')",
    ],
    "many_errors": [
        "%%flyte_task a() -> x: str\nx = 'a'", "%%flyte_task b(x: int) -> y: int\ny = nope",
        "%%flyte_task c() -> y: int\ny = 2",
    ],
}


def main() -> None:
    for name, cells in FIXTURES.items():
        write(name, *cells)
    (HERE / "not_json.ipynb").write_text("this is { not json")
    (HERE / "empty.ipynb").write_text("")
    (HERE / "png_renamed.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\xff\xfe")
    (HERE / "schema_invalid.ipynb").write_text(
        '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": 3}]}')
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "%%flyte_task t() -> x: int\nx = 1", "language": "python",
         "outputs": [], "metadata": {}}], "metadata": {}}]}
    import json

    (HERE / "nbformat_v3.ipynb").write_text(json.dumps(v3))


if __name__ == "__main__":
    main()
