"""The peers' throwaway venvs: `benchmarks/.venvs/NAME`, made once with `python -m venv` + pip, then reused.

A venv is reused while its `.installed` marker lists exactly the requirements asked for; otherwise it
is rebuilt. A failed install is not fatal: the caller gets the reason, and the table says it in the
peer's cells instead of a number.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).parent / ".venvs"
INSTALL_TIMEOUT_S = 1800

# Pinned: the newest releases that install and run these workloads on Python 3.11 here. Each venv also gets
# what the workloads' cells import (pandas, scikit-learn) and a kernel (ipykernel).
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "ploomber": ("ploomber==0.23.3", "papermill", "ipykernel", "pandas", "scikit-learn"),
    "flytekit": ("flytekitplugins-papermill==1.16.31", "ipykernel", "pandas", "scikit-learn"),
}


@dataclass(frozen=True)
class PeerEnv:
    python: Path | None
    error: str = ""  # why there is no python, in one line


def _last_lines(text: str, count: int = 3) -> str:
    # pip repeats a warning per package for the local indexes it cannot read: keep the lines that say something
    lines = [ln for ln in text.splitlines() if ln.strip() and "is ignored: it is neither" not in ln]
    return " / ".join(lines[-count:])


def ensure(name: str, log: Path) -> PeerEnv:
    """The venv's python, building the venv first if it is missing or was made for other requirements."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    wanted = "\n".join(REQUIREMENTS[name]) + "\n"
    marker = venv / ".installed"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return PeerEnv(python)
    shutil.rmtree(venv, ignore_errors=True)
    print(f"  making {venv} ({', '.join(REQUIREMENTS[name])}); this takes a few minutes once", flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    steps = [
        # the base interpreter, not this venv's: the peer must not see flyte_lab's packages
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[name]],
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return PeerEnv(None, f"install timed out after {INSTALL_TIMEOUT_S} s")
            out.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
            if proc.returncode != 0:
                return PeerEnv(None, f"install failed ({log}): {_last_lines(proc.stderr or proc.stdout)}")
    marker.write_text(wanted)
    return PeerEnv(python)
