"""Runs forked from the launch template (`server/launch_template.py`): the Jupyter server's side.

`LaunchTemplate` starts the template and speaks to it over a private SOCK_SEQPACKET socketpair (one message per
request, file descriptors attached with `socket.send_fds`); its calls block, so the launcher makes them in a
thread, one at a time. A run the template forked is the template's child, not ours: `ForkedRun` watches it
through a pidfd (no `waitpid`, no race with pid reuse). Anything that goes wrong raises `LaunchTemplateError`;
the launcher then spawns that run as before and starts a new template for the next one.

`fingerprint()` is what a template fixes at its start and a run forked from it inherits: the interpreter, the
working folder, the environment, `sys.path` and what is installed (a site-packages folder's mtime changes when a
package is installed, upgraded or removed there; flyte_lab's own sources are stamped one by one, for an editable
install). A template whose fingerprint is not the server's at a launch is replaced first.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import site
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0  # the template's imports, on a loaded machine
FORK_TIMEOUT_S = 30.0
MAX_MESSAGE = 4096
# not `-m`: that puts the working folder first on sys.path (see launch_template's docstring); under `-P` or `-I`
# (safe_path) `-c` adds no such entry
TEMPLATE_MAIN = ("import sys\nif not getattr(sys.flags, 'safe_path', False): del sys.path[0]\n"
                 "from flyte_lab.server.launch_template import main\nmain()")

Fingerprint = tuple[str, str, tuple[tuple[str, str], ...], tuple[str, ...], tuple[int, ...]]


class LaunchTemplateError(Exception):
    """The template could not start, fork or answer; the launcher spawns the run instead."""


def fingerprint() -> Fingerprint:
    try:
        cwd = os.getcwd()
    except OSError:  # removed under the server: a template started now would have none either
        cwd = ""
    return (sys.executable, cwd, tuple(sorted(os.environ.items())), tuple(sys.path), _install_stamps())


def _install_stamps() -> tuple[int, ...]:
    # the folders pip installs into: not every folder on sys.path, whose mtime changes with any file made there
    # (`python -m jupyterlab` puts the working folder, often the notebooks' root, on it)
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    stamps = []
    for folder in folders:
        try:
            stamps.append(os.stat(folder).st_mtime_ns)
        except OSError:
            stamps.append(0)
    package = Path(__file__).resolve().parents[1]
    stamps.append(max(p.stat().st_mtime_ns for p in package.rglob("*.py")))
    return tuple(stamps)


def what_changed(old: Fingerprint, new: Fingerprint) -> str:
    """The parts of `old` that `new` changed, in words (environment variables by name only: values may be secrets)."""
    parts = ["the interpreter", "the working folder", "the environment", "sys.path", "the installed packages"]
    changed = [what for what, a, b in zip(parts, old, new, strict=True) if a != b]
    if old[2] != new[2]:
        names = sorted({k for k, _ in set(old[2]) ^ set(new[2])})
        changed[changed.index("the environment")] = f"the environment ({', '.join(names)})"
    return ", ".join(changed)


class LaunchTemplate:
    """One template process; started at once, in the background: only the first launch waits for its imports."""

    def __init__(self) -> None:
        self.fingerprint = fingerprint()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # its stderr, so that a template that dies can say why (each run has a log of its own)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", TEMPLATE_MAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                start_new_session=True)  # Ctrl-C of `jupyter lab` is not for it: it exits when the server does
        except OSError as exc:
            ours.close()
            self._stderr.close()
            raise LaunchTemplateError(f"it could not start: {exc}") from exc
        finally:
            theirs.close()
        self._channel = ours
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        """Until its imports are done (at once after the first time). Blocks."""
        if not self.ready:
            hello = self._receive(READY_TIMEOUT_S)
            if hello.get("unsafe"):
                raise LaunchTemplateError(f"it cannot fork: {hello['unsafe']}")
            self.ready = True

    def launch(self, fds: list[int]) -> int:
        """Fork a run with `fds` (its stdin, stdout and log) as its 0, 1 and 2; its pid. Blocks."""
        self.wait_ready()
        try:
            self._channel.settimeout(FORK_TIMEOUT_S)
            socket.send_fds(self._channel, [b'{"op": "launch"}'], fds)
        except OSError as exc:
            raise LaunchTemplateError(f"it stopped listening ({exc}){self._last_words()}") from exc
        reply = self._receive(FORK_TIMEOUT_S)
        if "pid" not in reply:
            raise LaunchTemplateError(f"it refused: {reply.get('error')}")
        return int(reply["pid"])

    def _receive(self, timeout: float) -> dict[str, Any]:
        self._channel.settimeout(timeout)
        try:
            data = self._channel.recv(MAX_MESSAGE)
        except OSError as exc:  # TimeoutError included
            raise LaunchTemplateError(f"it stopped answering ({exc or type(exc).__name__})") from exc
        if not data:
            raise LaunchTemplateError(f"it exited{self._last_words()}")
        reply: dict[str, Any] = json.loads(data)
        return reply

    def _last_words(self) -> str:
        if self.proc.poll() is None:
            return ""
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return f" (exit {self.proc.returncode}: {lines[-1] if lines else 'no message'})"

    def close(self) -> None:
        """End the template; the runs it forked go on (each leads its own session). Blocks for a moment."""
        self._channel.close()  # what a dead server leaves too: the template exits on EOF
        self.proc.kill()  # but it may still be importing, and holds nothing worth an orderly exit
        self.proc.wait()
        self._stderr.close()


class ForkedRun:
    """A run the template forked, for the launcher: its pid, whether it runs, and waiting for its end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ended: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # it ended already
            self._fd = None

    def running(self) -> bool:
        if self._fd is not None and select.select([self._fd], [], [], 0)[0]:
            self._close()
        return self._fd is not None

    async def wait(self) -> None:
        if not self.running():
            return
        if self._ended is None:  # one watcher, however many wait
            self._loop = asyncio.get_running_loop()
            self._ended = self._loop.create_future()
            assert self._fd is not None
            self._loop.add_reader(self._fd, self._close)
        await asyncio.shield(self._ended)

    def detach(self) -> None:
        """Stop watching it (the server stops; the run goes on)."""
        self._close()

    def _close(self) -> None:
        if self._fd is None:
            return
        if self._ended is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            if not self._ended.done():
                self._ended.set_result(None)
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        if self._fd is not None and self._ended is None:
            os.close(self._fd)
