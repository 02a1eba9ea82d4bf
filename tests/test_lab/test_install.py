"""`pip install .` puts the server extension (enabled) and the prebuilt lab extension where Jupyter finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.test_lab.conftest import BUILT

REPO = BUILT.parents[1]


def test_wheel_install_enables_both_extensions(tmp_path: Path) -> None:
    if not (BUILT / "static" / "style.js").exists():
        pytest.skip("the lab extension is not built (`cd labextension && jlpm install && jlpm build:prod`)")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("flyte_lab-*.whl")
    # a fresh environment whose only flyte_lab is the wheel's; its other packages come from this one
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_base_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    # --ignore-installed: without it pip first uninstalls the flyte_lab of the environment running the tests
    subprocess.run([*pip, "install", "--no-deps", "--ignore-installed", "--prefix", str(venv), str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"), JUPYTER_DATA_DIR=str(tmp_path / "user-data"))
    server = subprocess.run([python, "-m", "jupyter_server", "extension", "list"], env=env, capture_output=True,
                            text=True, cwd=tmp_path, check=True)
    text = " ".join((server.stdout + server.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "").split())
    assert f"Config dir: {venv / 'etc' / 'jupyter'} flyte_lab enabled - Validating flyte_lab... flyte_lab 0.1.0 OK" \
        in text, text
    where = subprocess.run([python, "-c", "import flyte_lab; print(flyte_lab.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    lab = subprocess.run([python, "-m", "jupyterlab.labextensions", "list"], env=env, capture_output=True,
                         text=True, cwd=tmp_path, check=True)
    text = " ".join((lab.stdout + lab.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "").split())
    labextensions = venv / "share" / "jupyter" / "labextensions"
    assert f"{labextensions} flyte-lab v0.1.0 enabled OK (python, flyte_lab)" in text, text
