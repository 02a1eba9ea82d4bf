"""A task's executed notebook in Lab's read-only view runs none of the script its outputs carry, in real Chromium.

The run is real (`flyte-lab run`); Lab is this checkout's server and lab extensions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import CLI, NOTEBOOKS, cli_env
from tests.script_probe import marks_by_frame
from tests.test_lab.conftest import open_panel

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]


def test_executed_notebook_marked_trusted_is_shown_untrusted(page: Page, lab: Any) -> None:
    notebook = lab.root / "html_output_xss.ipynb"
    shutil.copy(NOTEBOOKS / "html_output_xss.ipynb", notebook)
    subprocess.run([*CLI, "run", str(notebook)], env=cli_env(lab.home), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=240, check=False)
    from flyte_lab.store import RunStore

    with RunStore.from_env(lab.home, create=False) as store:
        (run,) = store.list_runs()
        executed = Path(store.get_run(run["run_id"])["tasks"]["report"]["output_notebook"])
    # the file is the task's to write (Lab itself marks the cells of a notebook it saves trusted): whatever it
    # says, the view must not trust it
    content = json.loads(executed.read_text(encoding="utf-8"))
    for cell in content["cells"]:
        cell["metadata"]["trusted"] = True
    executed.write_text(json.dumps(content), encoding="utf-8")

    open_panel(page, lab, "html_output_xss.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-run-error-cell")).to_contain_text("RuntimeError: <img src=x onerror=", timeout=30_000)
    panel.locator(".flyte-open-executed").click()
    view = page.locator(".flyte-executed:not(.lm-mod-hidden)")
    expect(view.locator("b.harmless")).to_have_text("harmless bold text", timeout=30_000)
    expect(view.locator("td", has_text="forty-two")).to_have_count(1)
    expect(view.locator(".jp-OutputArea-output").filter(has_text="RuntimeError")).not_to_have_count(0)
    marks = marks_by_frame(page)
    assert all(ran is None for ran in marks.values()), marks
    expect(view.locator("script")).to_have_count(0)
