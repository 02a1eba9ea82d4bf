"""The CLI and the store's front door: `python -m flyte_lab`, read-only commands that create
nothing, one line for a bad FLYTE_LAB_DB_URL, a private home, a `runs` table that fits 100 columns."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from flyte_lab.cli import report
from flyte_lab.cli.main import main
from flyte_lab.presentation import formats
from flyte_lab.store import RunStore
from tests.conftest import CLI, NOTEBOOKS, cli_env

GRAPH = {"tasks": [{"name": "a", "cell": 2}], "edges": []}
TASKS = [{"name": "a", "cell": 2, "resources": {}}]


def test_python_dash_m_flyte_lab_is_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "flyte_lab", "runs"], capture_output=True, text=True,
                          env=cli_env(home), check=False)
    assert done.returncode == 0, done.stderr
    assert "no runs yet" in done.stdout
    help_text = subprocess.run([sys.executable, "-m", "flyte_lab", "--help"], capture_output=True, text=True,
                               env=cli_env(home), check=False).stdout
    assert "usage: flyte-lab" in help_text


@pytest.mark.parametrize("argv", [["runs"], ["runs", "--json"], ["show", "abc"], ["show", "abc", "--json"],
                                  ["outputs", "abc"], ["outputs", "abc", "--json"]])
def test_read_only_commands_create_nothing(home: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    if argv[0] == "runs":
        assert code == 0
        assert captured.out.strip() in ("[]", "no runs yet; `flyte-lab run NOTEBOOK` starts one")
    else:
        assert code == 2
        assert captured.err.strip() == ("flyte-lab: error: no run `abc`: there are no runs yet; "
                                        "`flyte-lab run NOTEBOOK` starts one")
    assert not home.exists()


def test_read_only_commands_on_an_empty_postgres_like_url_create_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "elsewhere" / "store.db"
    monkeypatch.setenv("FLYTE_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLYTE_LAB_DB_URL", f"sqlite:///{db}")
    assert main(["runs", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert not db.parent.exists() and not (tmp_path / "home").exists()


def test_show_finds_runs_once_a_store_exists(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunStore.from_env() as store:
        rid = store.create_run("/x/pipe.ipynb", {}, GRAPH, TASKS, "local", notebook_hash="h")
    assert main(["show", rid, "--json"]) == 0
    assert rid in capsys.readouterr().out
    assert main(["show", "nope"]) == 2
    assert "no run `nope` in the store" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "not a database URL"),
    ("nosuchdb://u@h/d", "unknown database dialect `nosuchdb`"),
    ("postgresql://me:secret@127.0.0.1:1/db", "cannot open it|driver is not installed"),
])
@pytest.mark.parametrize("argv", [["runs"], ["show", "x"]])
def test_a_bad_db_url_is_one_line_naming_the_variable(tmp_path: Path, url: str, says: str,
                                                      argv: list[str]) -> None:
    env = cli_env(tmp_path / "home")
    env["FLYTE_LAB_DB_URL"] = url
    done = subprocess.run([sys.executable, "-m", "flyte_lab", *argv], capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flyte-lab: error: FLYTE_LAB_DB_URL="), done.stderr
    assert any(part in lines[0] for part in says.split("|")), lines[0]
    assert "secret" not in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()


def test_a_bad_db_url_when_writing_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.errors import UserInputError

    monkeypatch.setenv("FLYTE_LAB_DB_URL", "nosuchdb://h/d")
    with pytest.raises(UserInputError, match=r"^FLYTE_LAB_DB_URL=nosuchdb://h/d: unknown database dialect"):
        RunStore.from_env(tmp_path / "home")
    plain = tmp_path / "plain"
    plain.write_text("")  # unreachable: its folder would have to live under a file
    monkeypatch.setenv("FLYTE_LAB_DB_URL", f"sqlite:///{plain}/under/store.db")
    with pytest.raises(UserInputError, match=r"^FLYTE_LAB_DB_URL=sqlite:///.*: cannot open it \("):
        RunStore.from_env(tmp_path / "home")


def test_home_and_store_files_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0o022)
    try:
        home = tmp_path / "home" / "nested"
        monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
        with RunStore.from_env(home) as store:
            store.create_run("nb.ipynb", {}, GRAPH, TASKS, "local", notebook_hash="h")
            other = sqlite3.connect(home / "store.db")  # a second reader keeps -wal/-shm in place
            other.execute("SELECT count(*) FROM runs").fetchall()
            names = sorted(p.name for p in home.iterdir())
            assert {"store.db", "store.db-wal", "store.db-shm"} <= set(names)
            for name in names:
                assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600, name
            other.close()
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(home.parent).st_mode) == 0o700
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        RunStore.from_env(loose).close()
        assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700  # an existing home is tightened
    finally:
        os.umask(old)


def test_runs_table_shows_the_file_name_and_fits_100_columns() -> None:
    deep = "/very/long/" + "/".join(f"folder_{i:02d}_with_a_long_name" for i in range(8))
    runs = [
        {"run_id": "20250101-120000-1a2b3c", "notebook": f"{deep}/pipeline.ipynb", "status": "succeeded",
         "schedule": None, "created_at": "2025-01-01T12:00:00+00:00",
         "started_at": "2025-01-01T12:00:00+00:00", "finished_at": "2025-01-01T12:04:05+00:00"},
        {"run_id": "20250101-130000-4d5e6f", "notebook": f"{deep}/{'x' * 80}.ipynb", "status": "cancelled",
         "schedule": "nightly", "created_at": "2025-01-01T13:00:00+00:00", "finished_at": None},
    ]
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None).print(
        report.runs_table(runs, now=datetime(2025, 1, 1, 13, 0, 1, tzinfo=UTC)))
    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert len(lines) == 4  # header, rule, one line per run
    assert "pipeline.ipynb" in lines[2] and "folder_" not in buffer.getvalue()
    assert lines[2].split()[-1] == formats.format_duration(245.0) == "4m05s"
    assert lines[3].split()[-1] == formats.format_duration(1.0)
    assert "…" in lines[3]


def _modes(top: Path) -> dict[str, int]:
    """Every folder and file under `top` (itself included) and its permission bits."""
    found = {str(top): stat.S_IMODE(os.stat(top).st_mode)}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[path] = stat.S_IMODE(os.stat(path).st_mode)
    return found


@pytest.mark.cluster
def test_a_run_writes_everything_private_under_an_artifact_root_outside_home(tmp_path: Path) -> None:
    home, artifacts = tmp_path / "home", tmp_path / "shared" / "artifacts"
    env = dict(cli_env(home), FLYTE_LAB_ARTIFACTS=str(artifacts))
    env.pop("FLYTE_LAB_DB_URL", None)
    old = os.umask(0o022)  # what most users have; the CLI inherits it
    try:
        done = subprocess.run([*CLI, "run", str(NOTEBOOKS / "valid_pipeline.ipynb"), "-p", "n=5", "--workers", "1"],
                              env=env, capture_output=True, text=True, timeout=240, check=False)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    modes = _modes(artifacts) | _modes(home)
    assert any(p.endswith("attempt-1.ipynb") for p in modes) and any(p.endswith("outputs.json") for p in modes)
    loose = {p: oct(m) for p, m in modes.items() if m != (0o700 if os.path.isdir(p) else 0o600)}
    assert loose == {}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_store_a_newer_flyte_lab_wrote_is_one_line_and_left_as_it_is(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from flyte_lab.store.database import head_revision

    home = tmp_path / "home"
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    with RunStore.from_env(home) as store:
        store.create_run("/x/pipe.ipynb", {}, GRAPH, TASKS, "local", notebook_hash="h")
    with sqlite3.connect(home / "store.db") as db:  # as a later version's migration would leave it
        db.execute("UPDATE alembic_version SET version_num = '0999'")
    db.close()
    before = _files(home)
    env = dict(cli_env(home))
    env.pop("FLYTE_LAB_DB_URL", None)
    for argv in (["runs"], ["show", "abc"], ["cancel", "abc"], ["run", str(NOTEBOOKS / "valid_pipeline.ipynb")]):
        done = subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.splitlines() == [
            f"flyte-lab: error: the run store at sqlite:///{home}/store.db was written by a newer version of "
            f"flyte_lab (schema revision `0999`; this one knows up to `{head_revision()}`); upgrade flyte_lab to "
            "use it (the store was left as it is)"], argv
        assert _files(home) == before, argv  # not a byte changed, no -wal/-shm or key left behind


def test_a_0_byte_store_file_is_no_store_and_stays_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "store.db").touch()
    monkeypatch.setenv("FLYTE_LAB_HOME", str(home))
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    assert main(["runs", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert main(["show", "abc"]) == 2
    assert "no run `abc`" in capsys.readouterr().err
    assert _files(home) == {"store.db": b""}


def _read_only_mounts_work() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _read_only_mounts_work(), reason="needs `unshare -m` (a private mount namespace): a "
                    "read-only bind mount is the one refusal that holds for root, who ignores file modes")
@pytest.mark.parametrize("under", ["", "team/runs"])
def test_a_read_only_artifact_folder_is_one_line_and_nothing_is_created(tmp_path: Path, under: str) -> None:
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    artifacts.mkdir()
    root = artifacts / under
    env = dict(cli_env(home), FLYTE_LAB_ARTIFACTS=str(root))
    env.pop("FLYTE_LAB_DB_URL", None)
    run = " ".join([*CLI, "run", str(NOTEBOOKS / "valid_pipeline.ipynb"), "--workers", "1"])
    script = f"mount --bind {artifacts} {artifacts} && mount -o remount,bind,ro {artifacts} && exec {run}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"flyte-lab: error: FLYTE_LAB_ARTIFACTS={root}: cannot write there (Read-only file system)"]
    assert not home.exists() and list(artifacts.iterdir()) == []  # no store, no key, no folder
