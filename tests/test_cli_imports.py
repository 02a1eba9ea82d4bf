"""The CLI process imports what its command needs: read-only commands no Dask, papermill or data libraries;
`run` papermill without its remote-store handlers (boto3, pyarrow.fs); no command jsonschema's format
checkers. Each command runs as a real process; the modules it loaded are read from its `sys.modules` at exit.
What is declined stays importable by everyone else (`flyte_lab/import_costs.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env
from tests.process_helpers import write_notebook

# the CLI's `main`, then the modules loaded (a None entry in sys.modules is a refused import); `_cli` adds
# their top-level packages
WRAPPER = textwrap.dedent("""
    import json, os, sys
    from flyte_lab.cli.main import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    finally:
        loaded = sorted(name for name, mod in list(sys.modules.items()) if mod is not None)
        with open(os.environ["MODULES_OUT"], "w") as out:
            json.dump(loaded, out)
    sys.exit(code)
""")
HEAVY = {"distributed", "dask", "papermill", "nbclient", "jupyter_client", "zmq", "tornado", "boto3", "botocore",
         "s3fs", "pyarrow", "numpy", "pandas", "bokeh", "panel"}
REMOTE_HANDLERS = {"boto3", "botocore", "s3transfer", "pyarrow", "gcsfs", "azure", "github"}
Ran = tuple[Path, Path, dict[str, Any], set[str]]  # home, notebook, run record, modules its process loaded
FORMAT_CHECKERS = {"fqdn", "rfc3987", "rfc3986_validator", "rfc3987_syntax", "rfc3339_validator", "webcolors",
                   "jsonpointer", "uri_template", "isoduration", "arrow"}


def _cli(home: Path, tmp: Path, *argv: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp / "modules.json"
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-c", WRAPPER, *argv], env={**cli_env(home), "MODULES_OUT": str(out)},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done, {name.split(".")[0] for name in json.loads(out.read_text())} | set(json.loads(out.read_text()))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """One real local run, through the wrapper."""
    tmp = tmp_path_factory.mktemp("cli-imports")
    home = tmp / "home"
    nb = write_notebook(tmp / "two.ipynb", "n = 3",
                        "%%flyte_task make(n: int) -> numbers: list[int]\nnumbers = list(range(n))",
                        "%%flyte_task total(numbers: list[int]) -> result: int\nresult = sum(numbers)")
    done, loaded = _cli(home, tmp, "run", str(nb), "--cluster", "local", "--workers", "1", "--json", timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home, nb, json.loads(done.stdout), loaded


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_a_run_drives_papermill_without_its_remote_store_handlers(ran: Ran, tmp_path: Path) -> None:
    home, _, record, loaded = ran
    assert record["status"] == "succeeded", record
    outputs, _ = _cli(home, tmp_path, "outputs", record["run_id"], "--json")
    assert json.loads(outputs.stdout)["total"]["result"] == 3, outputs.stdout + outputs.stderr
    for task in record["tasks"].values():
        assert Path(task["output_notebook"]).is_file(), task  # papermill wrote each executed notebook
    assert {"papermill", "distributed", "nbclient"} <= loaded  # the check below is about a real run
    assert not loaded & REMOTE_HANDLERS, sorted(loaded & REMOTE_HANDLERS)
    assert not loaded & FORMAT_CHECKERS, sorted(loaded & FORMAT_CHECKERS)
    if "postgresql" not in os.environ.get("FLYTE_LAB_DB_URL", ""):
        assert "sqlalchemy.dialects.postgresql" not in loaded  # a SQLite store loads its own dialect only


@pytest.mark.cluster
@pytest.mark.timeout(180)
@pytest.mark.parametrize("argv", [
    ["--help"], ["validate", "{nb}"], ["validate", "{nb}", "--json"], ["runs"], ["runs", "--json"],
    ["show", "{run}"], ["show", "{run}", "--json"], ["outputs", "{run}", "--json"], ["cancel", "{run}"],
    ["cancel", "no-such-run"], ["schedule", "list"],
])
def test_read_only_commands_load_no_engine(ran: Ran, tmp_path: Path, argv: list[str]) -> None:
    home, nb, record, _ = ran
    argv = [a.format(nb=nb, run=record["run_id"]) for a in argv]
    done, loaded = _cli(home, tmp_path, *argv)
    assert done.returncode == (2 if "no-such-run" in argv else 0), done.stderr
    assert "Traceback" not in done.stderr
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    assert not loaded & FORMAT_CHECKERS, sorted(loaded & FORMAT_CHECKERS)
    if argv[0] == "validate":
        assert "nbformat" in loaded  # it did read the notebook


def test_declined_imports_stay_importable_by_any_other_importer() -> None:
    code = textwrap.dedent("""
        import sys
        from flyte_lab.import_costs import decline_unused_imports
        decline_unused_imports()
        decline_unused_imports()  # once is enough
        import papermill.iorw, jsonschema
        assert "papermill.s3" not in sys.modules and "boto3" not in sys.modules and "pyarrow" not in sys.modules
        assert "isoduration" not in sys.modules and "webcolors" not in sys.modules
        assert sum(type(f).__name__ == "_Decline" for f in sys.meta_path) == 1
        import boto3, pyarrow.fs, pyarrow.parquet, isoduration, webcolors, papermill.s3  # anyone else: loaded
        assert papermill.s3.S3.__module__ == "papermill.s3"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_without_the_cli_papermill_keeps_its_handlers() -> None:
    # the engine inside a user's kernel or Jupyter server: nothing is declined there
    code = textwrap.dedent("""
        import flyte_lab, flyte_lab.engine.worker.run_attempt, papermill.iorw, papermill.s3
        import jsonschema._format as formats
        assert papermill.iorw.S3 is papermill.s3.S3
        assert "idn-hostname" in formats.draft202012_format_checker.checkers
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
