"""flyte_lab run by an ordinary user (uid 65534, `nobody`), for tests of what such a user's processes can see.

Everything else here runs as root, and root passes every /proc permission check: only a test as another
user shows what one process of a user can read of another. `setpriv` switches user (dropping capabilities).
The test venv's interpreter may sit where that user cannot go (pyenv under /root, mode 0700), so the user gets a
venv of its own from Debian's `/usr/bin/python3` (same version) that sees this checkout and the test venv's
packages through a `.pth` file, a `python3` kernelspec running that interpreter, and its own HOME, TMPDIR and
FLYTE_LAB_HOME. Where any of this is not possible, `OrdinaryUser.create` says why (`Unavailable`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

UID = 65534
SETPRIV = "/usr/bin/setpriv"
SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[1]


class Unavailable(Exception):
    pass


class OrdinaryUser:
    def __init__(self, root: Path) -> None:
        self.root = root  # owned by the user, 0700: everything of the user's lives here
        self.home = root / "home"
        self.flyte_home = root / "flyte-home"
        self.tmp = root / "tmp"
        self.work = root / "work"  # notebooks and files the user's tasks share
        self.python = root / "venv" / "bin" / "python"

    @classmethod
    def create(cls) -> OrdinaryUser:
        if not sys.platform.startswith("linux"):
            raise Unavailable("needs Linux (/proc, setpriv)")
        if os.geteuid() != 0:
            raise Unavailable("switching to uid 65534 needs root")
        for program in (SETPRIV, SYSTEM_PYTHON):
            if not os.access(program, os.X_OK):
                raise Unavailable(f"{program} is missing")
        version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.split()
        if version != [str(sys.version_info[0]), str(sys.version_info[1])]:
            raise Unavailable(f"{SYSTEM_PYTHON} is Python {'.'.join(version)}, the test venv's packages are for "
                              f"{sys.version_info[0]}.{sys.version_info[1]}")
        user = cls(Path(tempfile.mkdtemp(prefix="flyte-lab-user-")))  # not under pytest's tmp: root's, 0700
        try:
            user._build()
        except BaseException:
            user.remove()
            raise
        return user

    def _build(self) -> None:
        for folder in (self.home, self.flyte_home, self.tmp, self.work):
            folder.mkdir(mode=0o700)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(self.root / "venv")], check=True,
                       capture_output=True)
        site = subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # this checkout first, then the test venv's packages (plain paths: their own .pth files, among them
        # the editable install of another checkout, are not read)
        paths = dict.fromkeys([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        Path(site, "flyte_lab_test.pth").write_text("".join(f"{p}\n" for p in paths))
        spec = self.home / ".local" / "share" / "jupyter" / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (uid 65534)", "language": "python"}))
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(self.root)], check=True)
        check = self.run([str(self.python), "-c", "import flyte_lab, ipykernel, zmq, distributed, papermill; "
                          "print(flyte_lab.__file__)"])
        if check.returncode != 0:
            raise Unavailable(f"uid {UID} cannot import the test venv's packages: {check.stderr.strip()[-500:]}")
        if not check.stdout.strip().startswith(str(REPO)):
            raise AssertionError(f"uid {UID} imports flyte_lab from {check.stdout.strip()}, not from {REPO}")

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.python.parent}:/usr/bin:/bin", "HOME": str(self.home), "TMPDIR": str(self.tmp),
                "FLYTE_LAB_HOME": str(self.flyte_home), "LANG": "C.UTF-8", **extra}

    def argv(self, cmd: list[str]) -> list[str]:
        return [SETPRIV, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", *cmd]

    def run(self, cmd: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(cmd), env=self.env(**env), cwd=self.work, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)

    def popen(self, cmd: list[str], **env: str) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(cmd), env=self.env(**env), cwd=self.work, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def remove(self) -> None:
        from tests.process_helpers import kill_home_processes

        kill_home_processes(self.flyte_home)  # by pid: the processes carrying this user's private home
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ordinary_user() -> Iterator[OrdinaryUser]:
    try:
        user = OrdinaryUser.create()
    except Unavailable as why:
        pytest.skip(f"cannot run flyte_lab as an ordinary user here: {why}")
    try:
        yield user
    finally:
        user.remove()
