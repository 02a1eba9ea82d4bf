"""Kernels forked from a template process (`engine/worker/kernel_template.py`): the worker's side.

A normal kernel start costs ~0.4 CPU-s of imports; a fork from a template that already imported them costs
~0.06 CPU-s. Each worker process keeps one template per kernelspec and per set of scrubbed secrets, started
with the environment a normal kernel of that kernelspec would get. A kernel made by fork is a process like
any other to jupyter_client: `ForkedProcess` gives the provisioner the `Popen` methods it calls, backed by a
pidfd (the kernel is the template's child, not ours, so `waitpid` cannot see it; a pidfd can, without
racing pid reuse).

Only ipykernel kernelspecs are forked (`engine/worker/kernelspecs.py` says which): the template runs with the
kernelspec's interpreter and interpreter options, so it must be able to import this package there, as the
task's kernel must too. Anything that fails here raises `TemplateError`, and the caller starts kernels the
normal way and says why.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from flyte_lab.errors import FlyteLabError

log = logging.getLogger("flyte_lab.kernels")
TEMPLATE_START_TIMEOUT_S = 60.0
# not `-m`: that puts the working directory first on sys.path, where a folder named like one of our modules
# would shadow it (ipykernel_launcher drops it for the same reason; the kernel's IPython adds it back). Under
# `-P` or `-I` (safe_path) `-c` adds no such entry, and sys.path[0] is the standard library's.
TEMPLATE_MAIN = ("import sys\nif not getattr(sys.flags, 'safe_path', False): del sys.path[0]\n"
                 "from flyte_lab.engine.worker.kernel_template import main\nmain()")


class ForkedProcess:
    """The `subprocess.Popen` surface jupyter_client and `engine/worker/attempts` use, for a kernel we did not spawn."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._killed = False
        self._fd: int | None = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], 0)
            if ready:
                self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            self._ended()
        assert self.returncode is not None
        return self.returncode

    def _ended(self) -> None:
        # the exit status belongs to the template (the parent); what we know is whether we killed it
        self.returncode = -signal.SIGKILL if self._killed else 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None or self._fd is None:
            return
        if sig == signal.SIGKILL:
            self._killed = True
        try:
            signal.pidfd_send_signal(self._fd, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class Template:
    """One template process, spoken to over a private socketpair; its requests are serialised."""

    def __init__(self, interpreter: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        """`interpreter`: the kernelspec's interpreter and its options (`python -Xfrozen_modules=off`)."""
        ours, theirs = socket.socketpair()
        # its stderr, so that a template that dies can say why (the kernels it forks write to /dev/null)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*interpreter, "-c", TEMPLATE_MAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()],
            env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            start_new_session=True)
        theirs.close()
        self._channel = ours
        self._channel.settimeout(TEMPLATE_START_TIMEOUT_S)
        self._reader = ours.makefile("rb")
        self._lock = threading.Lock()
        self.preloaded: set[str] = set()
        self.skipped: set[str] = set()  # modules that failed to import here, or made forking unsafe
        hello = self._read()
        if hello.get("unsafe"):
            self.close()
            raise TemplateError(f"the template cannot fork: {hello['unsafe']}")

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            raise TemplateError(f"the kernel template (pid {self.proc.pid}) exited: {self._last_error()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        with self._lock:
            self._channel.settimeout(timeout)
            try:
                self._channel.sendall(json.dumps(request).encode() + b"\n")
                return self._read()
            except (OSError, ValueError) as exc:
                raise TemplateError(f"the kernel template (pid {self.proc.pid}) stopped answering: {exc}") from exc

    def preload(self, modules: Iterable[str]) -> str | None:
        """Import modules not yet imported here; the module that made forking unsafe, if one did."""
        wanted = [m for m in modules if m not in self.preloaded and m not in self.skipped]
        if not wanted:
            return None
        reply = self._ask({"op": "preload", "modules": wanted}, timeout=TEMPLATE_START_TIMEOUT_S * 5)
        self.preloaded.update(reply.get("loaded", []))
        self.skipped.update(reply.get("failed", {}))
        for name, why in reply.get("failed", {}).items():
            log.info("kernel template: setup import %s failed here (%s); the task's kernel will import it", name, why)
        if reply.get("unsafe"):
            log.warning("kernel template: %s; kernels fork from a template without it", reply["unsafe"])
            return str(reply.get("module"))
        return None

    def fork(self, connection_file: str, argv: list[str]) -> ForkedProcess:
        reply = self._ask({"op": "fork", "connection_file": connection_file, "cwd": os.getcwd(), "argv": argv},
                          timeout=30)
        if "pid" not in reply:
            raise TemplateError(str(reply.get("error")))
        return ForkedProcess(int(reply["pid"]))

    def _last_error(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "no message"

    def _hang_up(self) -> None:
        # the socket's fd closes only when its file object is closed too; until then the template sees no EOF
        self._reader.close()
        self._channel.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def retire(self) -> None:
        """No more forks; the template exits once the kernels it forked (maybe running tasks) have exited."""
        with self._lock:
            try:
                self._channel.sendall(b'{"op": "retire"}\n')
            except OSError:
                pass
            self._hang_up()
        threading.Thread(target=self.proc.wait, name="flyte-lab-template-reaper", daemon=True).start()

    def close(self) -> None:
        """Ends the template and every kernel it forked (EOF without `retire`)."""
        try:
            with self._lock:
                self._hang_up()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


KernelProcess = subprocess.Popen[bytes] | ForkedProcess


class TemplateError(FlyteLabError):
    """A template could not start, fork or answer; the caller falls back to a normal kernel start."""
