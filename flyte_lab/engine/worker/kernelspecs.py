"""What a notebook's kernelspec says about starting its kernels: found, forkable, with which command and env.

A kernelspec is looked up the way Jupyter does (`KernelSpecManager`: a `--user` one may shadow the venv's).
Kernels fork from a template (`engine/worker/forked_kernels.py`) when the kernelspec runs ipykernel as
`INTERPRETER [OPTIONS] -m ipykernel_launcher ARGS`, which is what every `python -m ipykernel install` writes
(on Python 3.11+ with `-Xfrozen_modules=off`) and what ipykernel's wheel ships (`python`, no options). The
template is started as `INTERPRETER OPTIONS -c ...` with the kernelspec's `env`, so it, and each kernel forked
from it, has the interpreter, flags and environment a normal start of that kernel would have; ARGS go to each
fork's kernel application. Any other shape (a wrapper such as `conda run` or `env`, another language) is
started as a process, and `fork_refusal` says why.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from string import Template
from typing import Any

KERNEL_MODULES = ("ipykernel_launcher", "ipykernel")
# the interpreter options that take their value as the next argument (`-X frozen_modules=off`)
_OPTIONS_WITH_VALUE = ("-X", "-W", "--check-hash-based-pycs")
# what decides where Jupyter looks for kernelspecs (jupyter_core.paths): a lookup is cached per value of these
_PATH_VARS = ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_PREFER_ENV_PATH", "XDG_DATA_HOME", "HOME")
SPEC_TTL_S = 5.0  # a kernelspec installed or changed meanwhile is seen this much later

_specs: dict[tuple[str, ...], tuple[float, Any]] = {}


def kernel_spec(name: str) -> Any:
    """The kernelspec `name`, looked up at most every SPEC_TTL_S (a lookup scans every Jupyter data folder)."""
    from jupyter_client.kernelspec import KernelSpecManager

    key = (name, *(os.environ.get(v, "") for v in _PATH_VARS))
    found = _specs.get(key)
    if found is None or time.monotonic() - found[0] > SPEC_TTL_S:
        found = _specs[key] = (time.monotonic(), KernelSpecManager().get_kernel_spec(name))
    return found[1]


def missing_kernelspec(name: str) -> str | None:
    """Why kernelspec `name` cannot start a kernel here (a message naming the installed ones), or None."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        kernel_spec(name)
    except NoSuchKernel:
        installed = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        return (f"the notebook's kernelspec `{name}` is not installed here (installed kernelspecs: {installed}); "
                "install it (e.g. `python -m ipykernel install --user --name NAME`) or change the notebook's kernel")
    return None


def is_ipykernel(argv: list[str]) -> bool:
    return any(arg in KERNEL_MODULES for arg in argv)


def interpreter(argv0: str) -> str:
    """A kernelspec's bare `python` is this interpreter (as jupyter_client does), anything else as written."""
    return sys.executable if argv0 in ("python", f"python{sys.version_info[0]}") else argv0


@dataclass(frozen=True)
class Launch:
    """How a forkable kernelspec starts ipykernel, split the way a template needs it."""

    python: str
    options: tuple[str, ...]  # the interpreter's options, between it and `-m`
    kernel_args: tuple[str, ...]  # the kernel application's own options, without `-f {connection_file}`


def launch_of(spec: Any) -> Launch | str:
    """The kernelspec's `Launch`, or why its kernels cannot be forked (one sentence)."""
    argv = [a.replace("{resource_dir}", spec.resource_dir) for a in spec.argv]
    if not is_ipykernel(argv):
        return f"it does not run ipykernel ({_shown(argv)})"
    module = next((i for i, a in enumerate(argv[:-1]) if a == "-m" and argv[i + 1] in KERNEL_MODULES), None)
    if module is None:
        return f"it does not start ipykernel with `-m ipykernel_launcher` ({_shown(argv)})"
    options = argv[1:module]
    wrapped = _not_an_option(options)
    if wrapped is not None:
        return (f"it starts ipykernel through `{argv[0]}` with `{wrapped}`, not a Python interpreter with its "
                f"options ({_shown(argv)})")
    return Launch(interpreter(argv[0]), tuple(options), tuple(_kernel_args(argv[module + 2:])))


def _not_an_option(options: list[str]) -> str | None:
    """The first argument before `-m` that is no interpreter option (e.g. `python` after `env`), or None."""
    value_next = False
    for arg in options:
        if value_next:
            value_next = False
        elif arg in _OPTIONS_WITH_VALUE:
            value_next = True
        elif not arg.startswith("-") or arg in ("-c", "-m", "-"):
            return arg
    return None


def _kernel_args(args: list[str]) -> list[str]:
    """The kernel's own options (e.g. `--matplotlib=inline`), without its connection file."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-f":
            skip = True
        elif not (arg.startswith("--f=") or arg.startswith("--connection-file") or arg == "{connection_file}"):
            kept.append(arg)
    return kept


def _shown(argv: list[str]) -> str:
    return "argv " + " ".join(argv)


def spec_env(base: dict[str, str], spec: Any, scrub: Iterable[str]) -> dict[str, str]:
    """The environment a kernel of `spec` starts with: `base` less the scrubbed names, then the kernelspec's
    `env` with `${NAME}` filled in from that (as jupyter_client does; never from a scrubbed secret)."""
    env = {k: v for k, v in base.items() if k not in set(scrub)}
    env.pop("PYDEVD_USE_FRAME_EVAL", None)
    env.update({k: Template(str(v)).safe_substitute(env) for k, v in (spec.env or {}).items()})
    if str(getattr(spec, "language", "") or "").lower().startswith("python"):
        env.pop("PYTHONEXECUTABLE", None)  # jupyter_client's rule: it would make `sys.executable` lie
    return env
