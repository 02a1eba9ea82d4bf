"""The run widget as a reader of the executed notebook sees it: its saved state drawn in real headless Chromium.

A notebook runs `%flyte_run` on a pipeline with a failing branch (nbclient, a real kernel and cluster, widget state
stored); nbconvert writes it as HTML with that state, and @jupyter-widgets/html-manager, fetched with `npm pack`
(never from a CDN) and served from 127.0.0.1, draws the widgets. Set FLYTE_LAB_DOCS_SCREENSHOTS=1 to write
docs/widget.png for the README.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import CHROMIUM
from tests.test_widget import errors_of, execute, pipeline

DOCS = Path(__file__).parent.parent / "docs"
# what nbconvert's own CDN links would fetch, pinned: html-manager 1.x draws ipywidgets 8 state
NPM_PACKAGES = {"@jupyter-widgets/html-manager@1.0.15": "package/dist/", "requirejs@2.3.8": "package/require.js"}

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def widget_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with html-manager's `dist/` files and `require.js`, from the npm registry's tarballs."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: it fetches @jupyter-widgets/html-manager")
    folder = tmp_path_factory.mktemp("widget-js")
    done = subprocess.run(["npm", "pack", "--silent", *NPM_PACKAGES], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        pytest.skip(f"npm pack failed (no registry here?): {done.stderr.strip()[-300:]}")
    for tarball in folder.glob("*.tgz"):
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                if member.isfile() and any(member.name.startswith(p) for p in NPM_PACKAGES.values()):
                    member.name = Path(member.name).name  # flat: embed-amd.js finds its fonts next to it
                    archive.extract(member, folder, filter="data")
    assert (folder / "embed-amd.js").exists() and (folder / "require.js").exists()
    return folder


@pytest.fixture
def site(tmp_path: Path, widget_js: Path) -> Iterator[tuple[Path, str]]:
    """(folder, base URL): a static HTTP server on 127.0.0.1 (nbconvert's widget script tags ask for CORS, which
    file:// pages cannot give); stopped when the test ends."""
    folder = tmp_path / "site"
    shutil.copytree(widget_js, folder)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="widget-site", daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the page's requests are not test output
        pass


def test_saved_widget_draws_the_final_run_in_chromium(browser: Any, home: Path, tmp_path: Path,
                                                      site: tuple[Path, str]) -> None:
    from nbconvert import HTMLExporter

    path = pipeline(tmp_path / "pipe.ipynb", says="dividing by <b>zero</b>?")
    nb = execute(new_notebook(cells=[new_code_cell("%load_ext flyte_lab"), new_code_cell(f"%flyte_run {path}")],
                              metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}}), tmp_path)
    assert errors_of(nb) == []
    folder, url = site
    html, _ = HTMLExporter(template_name="lab", widget_renderer_url=f"{url}/embed-amd.js",
                           require_js_url=f"{url}/require.js").from_notebook_node(nb)
    (folder / "run.html").write_text(html, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        tab.goto(f"{url}/run.html")
        widget = tab.locator(".widget-vbox").first
        widget.locator('[data-task="ratio"][data-status="failed"]').first.wait_for()
        # the progress bar, at its end: tasks finished successfully (issue 17: failed ones are not progress)
        assert widget.locator(".widget-hprogress").inner_text().strip() == "2/4"
        assert widget.get_by_role("button", name="Cancel").is_disabled()  # nothing left to cancel
        for task, status in {"make": "succeeded", "total": "succeeded", "ratio": "failed",
                             "report": "skipped"}.items():
            assert widget.locator(f'[data-task="{task}"][data-status="{status}"]').count() >= 1
        assert "failed at cell 5, line 3: ZeroDivisionError" in widget.inner_text()
        # what the failed task printed last stays under the task table, as the text it printed
        assert widget.locator('.flyte-output[data-task="ratio"] pre').inner_text() == "dividing by <b>zero</b>?"
        assert widget.locator("svg").count() >= 1  # the graph picture, coloured by status
        box = widget.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 300
        target = DOCS if os.environ.get("FLYTE_LAB_DOCS_SCREENSHOTS") else tmp_path
        target.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(target / "widget.png"))
    finally:
        context.close()


def test_a_failed_task_low_in_a_long_graph_is_in_view_without_scrolling(browser: Any, tmp_path: Path) -> None:
    """The widget's graph of a 12-task chain whose last task failed, as Chromium lays it out in a notebook-wide
    box: the failed node lies inside the box's visible part and the box does not scroll."""
    from flyte_lab.graph.validate import graph_json, validate_notebook
    from flyte_lab.kernel_ext.run_widget import RunWidget

    chain = [new_code_cell("%%flyte_task t0() -> y0: int\ny0 = 0")]
    chain += [new_code_cell(f"%%flyte_task t{i}(y{i - 1}: int) -> y{i}: int\ny{i} = y{i - 1} + 1")
              for i in range(1, 12)]
    nbformat.write(new_notebook(cells=chain), tmp_path / "chain.ipynb")
    wf = validate_notebook(str(tmp_path / "chain.ipynb"))
    assert not wf.errors, [d.message for d in wf.diagnostics]
    tasks = {f"t{i}": {"status": "succeeded", "cell": i + 1} for i in range(11)}
    tasks["t11"] = {"status": "failed", "cell": 12}
    widget = RunWidget("test")
    widget.show({"run_id": "r1", "status": "failed", "tasks": tasks, "notebook": str(tmp_path / "chain.ipynb")},
                graph_json(wf), {})
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        tab = context.new_page()
        tab.set_content(f'<div id="cell" style="width:900px">{widget.graph.value}</div>')
        box = tab.locator("#cell > div")  # the graph box
        failed = tab.locator('.flyte-task[data-task="t11"]')
        shown, node = box.bounding_box(), failed.bounding_box()
        assert shown is not None and node is not None
        assert shown["y"] <= node["y"] and node["y"] + node["height"] <= shown["y"] + shown["height"] + 1
        assert shown["height"] <= 480 + 1
        assert box.evaluate("e => e.scrollHeight <= e.clientHeight + 1")
    finally:
        context.close()
