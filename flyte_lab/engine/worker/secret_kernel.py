"""A task's kernel that gets the task's secrets in memory, never in the environment it is started with.

`/proc/PID/environ` shows a process's environment as it was at exec, to every process of the same user. So a
task with `--env K=$NAME` gets a kernel started without K: the worker launches
`python [-X…] -m flyte_lab.engine.worker.secret_kernel ipykernel_launcher -f …` instead of `-m ipykernel_launcher`,
passing it one end of a socketpair. Here the kernel makes itself non-dumpable (so its environment and memory are
closed to its user's other processes), reads the secrets from the socket into `os.environ`, and runs the kernel
module as `-m` would. A socket, not a pipe or a file: another process cannot open `/proc/PID/fd/N` of a socket.

A kernelspec that does not start ipykernel with `-m` (another language, a wrapper script) cannot be started
this way: `command` returns None and the worker puts the secrets in that kernel's environment, as before.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys

FD_VAR = "FLYTE_LAB_SECRETS_FD"
KERNEL_MODULES = ("ipykernel_launcher", "ipykernel")
SEND_TIMEOUT_S = 30.0


def command(kernel_cmd: list[str]) -> list[str] | None:
    """`kernel_cmd` with `-m ipykernel_launcher` run through this module; None if it is not started that way."""
    for i, arg in enumerate(kernel_cmd[:-1]):
        if arg == "-m":
            if kernel_cmd[i + 1] not in KERNEL_MODULES:
                return None
            return [*kernel_cmd[:i + 1], __name__, *kernel_cmd[i + 1:]]
    return None


class SecretChannel:
    """The worker's side: a socketpair whose far end the kernel inherits (by `pass_fds`, so no other child of
    this process can), and the secrets written into it once the kernel is started."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self._payload = json.dumps(secrets).encode()
        self._ours, self._theirs = socket.socketpair()

    def launch_kw(self, env: dict[str, str]) -> dict[str, object]:
        """What the kernel's `Popen` needs: the inherited fd, named in its (otherwise secret-free) environment."""
        env[FD_VAR] = str(self._theirs.fileno())
        return {"env": env, "pass_fds": (self._theirs.fileno(),)}

    def send(self) -> None:
        """Hand the secrets over (after the launch: the kernel reads while we write) and close both ends here."""
        self._theirs.close()
        try:
            self._ours.settimeout(SEND_TIMEOUT_S)
            self._ours.sendall(self._payload)
        except OSError:
            pass  # the kernel died or hung before reading: its kernel manager reports that
        finally:
            self._ours.close()

    def close(self) -> None:
        self._theirs.close()
        self._ours.close()


def _receive(fd: int) -> dict[str, str]:
    chunks = []
    with socket.socket(fileno=fd) as sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return dict(json.loads(b"".join(chunks)))


def main() -> None:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # before the secrets exist in this process
    os.environ.update(_receive(int(os.environ.pop(FD_VAR))))
    module = sys.argv.pop(1)  # [this file, module, *its arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
