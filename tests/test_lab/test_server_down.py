"""The Flyte sidebar while the Jupyter server is down: one error line per section, not one more per refresh, gone
once a server answers again (the page left open all along)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from tests.test_lab.conftest import open_panel

pytestmark = [
    # pytest-playwright 0.10 declares its session fixtures on a class, which pytest 9 deprecates; not ours
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"),
]

FAILED_REFRESHES = 3  # refreshes of the runs list the server does not answer before the check
BACKOFF_MS = 120_000  # the sidebar waits longer between tries while the server fails (at most 30 s)


def test_a_server_that_is_down_shows_one_error_line_then_none(page: Page, lab: Any) -> None:
    open_panel(page, lab, "valid_pipeline.ipynb")
    panel = page.locator("#flyte-lab-panel")
    expect(panel.locator(".flyte-task")).to_have_count(2, timeout=30_000)
    runs = panel.locator(".flyte-section-runs")
    expect(runs.locator("div.flyte-error:visible")).to_have_count(0)

    def runs_request(request: Request) -> bool:
        return "/flyte-lab/api/runs?" in request.url

    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if runs_request(r) else None)
    lab.stop()
    while len(failed) < FAILED_REFRESHES:  # each refresh the sidebar makes, seen failing in the browser
        page.wait_for_event("requestfailed", predicate=runs_request, timeout=BACKOFF_MS)
    errors = runs.locator("div.flyte-error:visible")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text("Failed to fetch")  # what the browser says of a server that is not there

    lab.start()  # same port and token: the page reconnects
    expect(runs.locator("div.flyte-error:visible")).to_have_count(0, timeout=BACKOFF_MS)
    expect(panel.locator("div.flyte-error:visible")).to_have_count(0, timeout=BACKOFF_MS)
