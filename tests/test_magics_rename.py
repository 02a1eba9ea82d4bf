"""`%flyte_graph` in a kernel started by a real Jupyter server follows the notebook when it is renamed."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient

from tests.conftest import NOTEBOOKS

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, url: str, token: str, root: Path, runtime: Path) -> None:
        self.url, self.token, self.root, self.runtime = url, token, root, runtime

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", f"token {self.token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None


def _announced_port(runtime: Path) -> int | None:
    for path in runtime.glob("jpserver-*.json"):
        try:
            return int(json.loads(path.read_text())["port"])
        except (ValueError, KeyError, OSError):  # being written
            return None
    return None


@pytest.fixture
def server(tmp_path: Path, home: Path) -> Iterator[Server]:
    root, runtime = tmp_path / "root", tmp_path / "runtime"
    root.mkdir()
    port, token = free_port(), os.urandom(16).hex()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), IPYTHONDIR=str(tmp_path / "ipython"))
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                             "--allow-root"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        # the port it announces (in its runtime file, once it listens), not `port`: another process may have
        # taken that meanwhile (seen in CI, where the server moved to the next free one and the test knocked on
        # the old)
        while (listening := _announced_port(runtime)) is None:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the Jupyter server did not start"
            time.sleep(0.1)
        yield Server(f"http://127.0.0.1:{listening}", token, root, runtime)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def wait_for_kernel_info(client: BlockingKernelClient, timeout: float) -> None:
    """Ask until the kernel answers. Not `wait_for_ready`: for a client it did not start, that one declares the kernel
    dead when one heartbeat takes over a second, as a kernel importing on a loaded 2-core machine can (seen in CI)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"the kernel did not answer kernel_info in {timeout} s"
        msg_id = client.kernel_info()
        try:
            while client.get_shell_msg(timeout=1)["parent_header"].get("msg_id") != msg_id:
                pass
            client.get_iopub_msg(timeout=1)  # IOPub subscribed too (its busy/idle came), or ask again
        except queue.Empty:
            continue
        break
    while True:  # what came on IOPub before this is not the test's output
        try:
            client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            return


def run_in_kernel(server: Server, kernel_id: str, code: str) -> list[dict[str, Any]]:
    client = BlockingKernelClient()
    client.load_connection_file(str(server.runtime / f"kernel-{kernel_id}.json"))
    client.start_channels()
    try:
        outputs: list[dict[str, Any]] = []
        wait_for_kernel_info(client, timeout=60)
        client.execute_interactive(code, timeout=120, output_hook=lambda msg: outputs.append(msg))
        return outputs
    finally:
        client.stop_channels()


def test_flyte_graph_follows_a_renamed_notebook(server: Server) -> None:
    shutil.copy(NOTEBOOKS / "valid_pipeline.ipynb", server.root / "Untitled.ipynb")
    session = server.call("POST", "/api/sessions", {"path": "Untitled.ipynb", "type": "notebook", "name": "",
                                                    "kernel": {"name": "python3"}})
    kernel_id = session["kernel"]["id"]
    try:
        # what JupyterLab does on "Rename": move the file, then point the session at it
        server.call("PATCH", "/api/contents/Untitled.ipynb", {"path": "pipeline.ipynb"})
        server.call("PATCH", f"/api/sessions/{session['id']}", {"path": "pipeline.ipynb"})
        outputs = run_in_kernel(server, kernel_id, "%load_ext flyte_lab\n%flyte_graph")
    finally:
        server.call("DELETE", f"/api/sessions/{session['id']}")
    errors = [m["content"] for m in outputs if m["msg_type"] in ("error", "stream")
              and "Error" in json.dumps(m["content"])]
    assert errors == []
    html = "".join(m["content"]["data"].get("text/html", "") for m in outputs if m["msg_type"] == "display_data")
    assert f"{server.root / 'pipeline.ipynb'} as saved at " in html
    assert 'data-task="' in html
