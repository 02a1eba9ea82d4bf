"""The dashboard served by the Jupyter server itself (pytest-jupyter's real server, under its base URL `/a%40b/`):
the runs page and a run's page behind Jupyter's token or login cookie, everything refused without them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from flyte_lab.graph.validate import graph_json, validate_notebook
from flyte_lab.store import RunStore

DASHBOARD = "flyte-lab/dashboard"
NO_TOKEN = {"Authorization": ""}  # jp_fetch adds the server's token unless the header is given
WRONG_TOKEN = {"Authorization": "token not-the-token"}


def stored_run(notebook: Path) -> str:
    """A run of `notebook` recorded in the test's store, as a launch records it (its graph and tasks)."""
    wf = validate_notebook(str(notebook))
    tasks = [{"name": n, "cell": wf.tasks[n].cell, "resources": wf.tasks[n].options.resources()} for n in wf.order]
    with RunStore.from_env() as store:
        return str(store.create_run(str(notebook.resolve()), {}, graph_json(wf), tasks, "local",
                                    run_id="20260101-120000-abc123"))


async def page(jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    return await jp_fetch("/".join((DASHBOARD, *parts)), raise_error=False, follow_redirects=False, **kwargs)


async def test_the_dashboard_is_served_by_jupyter_behind_its_token(jp_fetch: Any, jp_ws_fetch: Any,
                                                                   jp_base_url: str, root: Path) -> None:
    run_id = stored_run(root / "valid_pipeline.ipynb")

    config = json.loads((await jp_fetch("flyte-lab", "api", "config")).body)
    assert config["dashboard_url"] == f"{jp_base_url}flyte-lab/dashboard"  # the sidebar's links lead here

    runs = await page(jp_fetch, "")
    assert runs.code == 200 and "<title>flyte_lab runs</title>" in runs.body.decode()
    run = await page(jp_fetch, "run", params={"id": run_id})
    body = run.body.decode()
    assert run.code == 200 and "<title>flyte_lab run</title>" in body
    # its resources are found under the same prefix (relative URLs), behind the same token
    assert 'src="static/js/bokeh.min.js' in body
    assert (await page(jp_fetch, "static", "js", "bokeh.min.js")).code == 200
    # the page's content comes over its websocket, on the session the page names: Bokeh's handshake answers
    session_token = re.search(r'"token":"([^"]+)"', body)
    assert session_token
    ws = await jp_ws_fetch(DASHBOARD, "run", "ws", subprotocols=["bokeh", session_token[1]])
    try:
        header = await ws.read_message()
        assert json.loads(header)["msgtype"] == "ACK"
    finally:
        ws.close()


@pytest.mark.parametrize("headers", [NO_TOKEN, WRONG_TOKEN], ids=["no-token", "wrong-token"])
async def test_without_jupyters_token_the_dashboard_is_refused(jp_fetch: Any, jp_ws_fetch: Any, jp_base_url: str,
                                                               root: Path, headers: dict[str, str]) -> None:
    run_id = stored_run(root / "valid_pipeline.ipynb")
    for parts, params in ((("",), None), (("run",), {"id": run_id}), (("static", "js", "bokeh.min.js"), None)):
        answer = await page(jp_fetch, *parts, params=params, headers=dict(headers))
        assert answer.code == 302, parts  # to Jupyter's login page, as Lab's own pages
        assert answer.headers["Location"].startswith(f"{jp_base_url}login?next=")
        assert run_id not in answer.body.decode()
    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch(DASHBOARD, "run", "ws", headers=dict(headers), subprotocols=["bokeh", "x"])
    assert refused.value.code == 403


async def test_a_token_in_the_url_becomes_the_login_cookie_the_pages_resources_use(
        jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, jp_base_url: str, root: Path) -> None:
    run_id = stored_run(root / "valid_pipeline.ipynb")
    token = jp_serverapp.identity_provider.token
    first = await page(jp_fetch, "run", params={"id": run_id, "token": token}, headers=dict(NO_TOKEN))
    # the token leaves the address; Jupyter's login cookie goes with the redirect
    assert first.code == 302 and first.headers["Location"] == f"{jp_base_url}flyte-lab/dashboard/run?id={run_id}"
    cookies = "; ".join(c.split(";")[0] for c in first.headers.get_list("Set-Cookie"))
    assert cookies
    with_cookie = {"Authorization": "", "Cookie": cookies}
    assert (await page(jp_fetch, "run", params={"id": run_id}, headers=dict(with_cookie))).code == 200
    assert (await page(jp_fetch, "static", "js", "bokeh.min.js", headers=dict(with_cookie))).code == 200
    # another site's page cannot open the websocket with the user's cookie
    foreign = dict(with_cookie, Origin="http://elsewhere.example")
    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch(DASHBOARD, "run", "ws", headers=foreign, subprotocols=["bokeh", "x"])
    assert refused.value.code == 403


def test_the_extension_imports_neither_panel_nor_bokeh_before_a_dashboard_request() -> None:
    probe = ("import sys, flyte_lab.server, flyte_lab.server.app, flyte_lab.server.dashboard; "
             "print(sorted(m for m in ('panel', 'bokeh') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
