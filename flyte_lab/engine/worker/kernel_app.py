"""The kernel application a template forks: configured once in the template, finished in each fork.

A kernel's start-up spends about a third of its CPU on configuration that is the same for every kernel of a
template: traitlets building an argparse parser for the command line, the profile folder, the config files,
then the InteractiveShell (magics, prefilters, completer, formatters). `prepare` does that part (IPython's
`BaseIPythonApplication.initialize`, and the shell while it is still nobody's) in the template, before any fork;
`become_kernel` sets the fork's own connection file and runs the rest of ipykernel's own `initialize`
(sockets, IO, kernel, shell), so what a kernel is made of still comes from ipykernel itself.

Runs in the template process only (`engine/worker/kernel_template.py`): nothing here may start a thread or make a zmq
context before the fork.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ipykernel.kernelapp import IPKernelApp
from IPython.core.application import BaseIPythonApplication


class _ConfiguredOnce(BaseIPythonApplication):
    """Sits between IPKernelApp and IPython's application in the MRO: once the template has configured the
    app, the fork's `initialize` skips straight to ipykernel's per-kernel steps."""

    configured = False

    def initialize(self, argv: Any = None) -> None:
        if self.configured:
            return
        super().initialize(argv)


class ForkedKernelApp(IPKernelApp, _ConfiguredOnce):
    """IPKernelApp, configured before the fork (`IPKernelApp.instance()` finds it in the kernel as usual)."""

    def init_heartbeat(self) -> None:
        # A task kernel's one client is its worker, which watches the process itself and opens no heartbeat
        # channel: no REP socket, no zmq context, I/O thread and thread of its own to start per task.
        return

    def init_kernel(self) -> None:
        super().init_kernel()
        shell = self.kernel.shell
        if shell.kernel is None:  # made by the template (`_make_shell`): it is this kernel's shell from now on
            shell.parent = self.kernel
            shell.kernel = self.kernel
            shell.starting_dir = os.getcwd()  # the fork's working directory, not the template's
            shell.user_ns["_dh"] = [os.getcwd()]


_prepared: tuple[str, ...] | None = None


def prepare(argv: list[str], parent_pid: int) -> None:
    """In the template: read the command line and config files every kernel of this template shares."""
    global _prepared
    if _prepared == tuple(argv):
        return
    ForkedKernelApp.clear_instance()
    app = ForkedKernelApp.instance()
    hook = sys.excepthook
    try:
        # IPython's part of start-up only: ipykernel's part (sockets, threads) is the fork's
        BaseIPythonApplication.initialize(app, [f"--IPKernelApp.parent_handle={parent_pid}", *argv])
    finally:
        sys.excepthook = hook  # the kernel's crash handler is the fork's business, not the template's
    app.configured = True
    _prepared = tuple(argv)
    _make_shell(app)


def _make_shell(app: ForkedKernelApp) -> None:
    """The kernel's InteractiveShell, made once here: IPythonKernel asks for `ZMQInteractiveShell.instance()`
    and so gets it, already built, in each fork (~10 ms of CPU per kernel, a sixth of its start-up). Only for
    ipykernel's own kernel and shell classes: a configured other one is built by the kernel as usual."""
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.zmqshell import ZMQInteractiveShell

    ZMQInteractiveShell.clear_instance()
    configured = {*app.config.get("IPythonKernel", {}), *app.config.get("Kernel", {})}
    if app.kernel_class is not IPythonKernel or {"shell_class", "compiler_class"} & configured:
        return
    try:
        ZMQInteractiveShell.instance(parent=app, profile_dir=app.profile_dir, compiler_class=XCachingCompiler)
    except Exception:  # the kernel will build it (and report the problem) itself
        ZMQInteractiveShell.clear_instance()


def become_kernel(connection_file: str, argv: list[str], parent_pid: int) -> None:
    """In the fork: the per-kernel part of start-up, then serve until shut down."""
    if _prepared == tuple(argv):
        app: IPKernelApp = ForkedKernelApp.instance()
        app.connection_file = connection_file
        app.init_crash_handler()
        app.initialize([])
    else:  # a fork for other arguments than the template prepared: the whole start-up here
        from ipykernel.zmqshell import ZMQInteractiveShell

        ZMQInteractiveShell.clear_instance()
        ForkedKernelApp.clear_instance()
        IPKernelApp.clear_instance()
        app = IPKernelApp.instance()
        app.initialize(["-f", connection_file, f"--IPKernelApp.parent_handle={parent_pid}", *argv])
    app.start()
