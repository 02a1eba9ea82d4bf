"""The CLI says what went wrong in its own one line: Dask's records of the same event (a lost scheduler's
broken connection, at ERROR with a traceback) do not reach its stderr, unless `--debug`.

Each case runs in a process of its own (logging levels are process-wide), through the CLI's real `main` and the
real `clusters.connect` import path; the records are the ones Dask logs when a client's scheduler dies, logged
directly so that the test, not a race, decides that they happen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

DASK_FAILS = """
import logging
try:
    raise OSError("Stream is closed")
except OSError:
    logging.getLogger("distributed.comm.tcp").error("boom: connection lost", exc_info=True)
logging.getLogger("distributed.client").error("boom: failed to reconnect")
logging.getLogger("distributed.core").warning("boom: lost connection")
logging.getLogger("tornado.application").error("boom: exception in callback")
logging.getLogger("asyncio").error("boom: task exception was never retrieved")
logging.getLogger("flyte_lab.driver").error("ours: still shown")
"""


def stderr_of(home: Path, prelude: str) -> str:
    done = subprocess.run([sys.executable, "-c", prelude + DASK_FAILS], env=cli_env(home), capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stderr


CLI_THEN_CONNECT = """
from flyte_lab.cli.main import main
main({argv!r})
import distributed
from flyte_lab.engine import clusters
try:
    with clusters.connect("nowhere"):  # imports distributed's client as a run does, then refuses the name
        pass
except Exception:
    pass
"""


@pytest.mark.parametrize("argv", [["runs"], ["--debug", "runs"]])
def test_the_cli_drops_dasks_records_of_a_lost_connection_unless_debug(home: Path, argv: list[str]) -> None:
    err = stderr_of(home, CLI_THEN_CONNECT.format(argv=argv))
    if "--debug" in argv:
        assert "boom: connection lost" in err and "Traceback" in err and "boom: failed to reconnect" in err
    else:
        assert "boom" not in err and "Traceback" not in err, err
    assert "ours: still shown" in err  # flyte_lab's own records are not touched


def test_quiet_holds_when_distributed_was_imported_first(home: Path) -> None:
    prelude = ("import distributed\nfrom flyte_lab.library_logs import quiet_in_this_process\n"
               "quiet_in_this_process()\n")
    err = stderr_of(home, prelude)
    assert "boom" not in err and "ours: still shown" in err, err


def test_outside_the_cli_dask_logs_as_usual(home: Path) -> None:
    """A user's kernel running `%flyte_run` goes through `connect` too: its Dask logging is the user's."""
    prelude = ("import distributed\nfrom flyte_lab.library_logs import after_dask_import\n"
               "after_dask_import()\n")
    err = stderr_of(home, prelude)
    assert "boom: connection lost" in err and "boom: failed to reconnect" in err
