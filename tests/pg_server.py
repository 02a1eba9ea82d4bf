"""A real PostgreSQL server for tests: initdb + pg_ctl as the `postgres` user, on 127.0.0.1 and a free port.

`PostgresServer.start()` returns a running server (or raises `Unavailable` with the reason to skip);
`fresh_database()` gives each test its own empty database; `stop()` shuts the server down and
removes its data folder. The binaries are found on PATH or in Debian's /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.process_helpers import free_port

PG_USER = "postgres"


class Unavailable(Exception):
    """Why no PostgreSQL server can be started here (the tests that need one skip with this)."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return debian[-1] if debian else None


class PostgresServer:
    def __init__(self, data_dir: Path, port: int, pg_ctl: str, as_user: list[str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self._pg_ctl = pg_ctl
        self._as_user = as_user  # runuser -u postgres -- when we are root

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls) -> PostgresServer:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
                              "apt-get install postgresql")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise Unavailable("psycopg is not installed: pip install 'psycopg[binary]'") from None
        as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                entry = pwd.getpwnam(PG_USER)
            except KeyError:
                raise Unavailable(f"running as root and there is no `{PG_USER}` user to run the server") from None
            if not shutil.which("runuser"):
                raise Unavailable("running as root without `runuser` to start the server as postgres")
            as_user = ["runuser", "-u", PG_USER, "--"]
        data_dir = Path(tempfile.mkdtemp(prefix="flyte_lab-pg-"))
        if as_user:
            os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        server = cls(data_dir, free_port(), pg_ctl, as_user)
        try:
            server._run([initdb, "-D", str(data_dir / "db"), "-A", "trust", "-U", PG_USER, "-E", "UTF8"], 120)
            options = (f"-p {server.port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c max_connections=60")
            # -w: pg_ctl returns once the server accepts connections (its own readiness check)
            server._run([pg_ctl, "-D", str(data_dir / "db"), "-o", options, "-l", str(data_dir / "log"),
                         "-w", "-t", "60", "start"], 90)
        except Unavailable:
            server.stop()
            raise
        return server

    def _run(self, argv: list[str], timeout: float) -> None:
        # not the FLYTE_LAB_HOME of the test that happened to start the session's server: its cleanup kills
        # every process carrying its home (`process_helpers.kill_home_processes`)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_LAB_")}
        done = subprocess.run([*self._as_user, *argv], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.data_dir, env=env)
        if done.returncode != 0:
            log = self.data_dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise Unavailable(f"`{' '.join(argv[:2])}` failed ({done.returncode}): "
                              f"{(done.stderr or done.stdout).strip()[-1000:]} {tail}")

    def fresh_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.data_dir / "db" / "postmaster.pid").exists():
            subprocess.run([*self._as_user, self._pg_ctl, "-D", str(self.data_dir / "db"), "-m", "fast", "-w",
                            "stop"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL, cwd=self.data_dir)
        shutil.rmtree(self.data_dir, ignore_errors=True)


# -- the engine suite on PostgreSQL (FLYTE_LAB_TEST_DB=postgresql; `./dev test-pg`) ---------------------------

TEST_DB_ENV = "FLYTE_LAB_TEST_DB"


def engine_on_postgres() -> bool:
    """Whether this session runs the engine tests against PostgreSQL (the `home` fixture then sets
    FLYTE_LAB_DB_URL to a fresh database of the session's server)."""
    return os.environ.get(TEST_DB_ENV, "sqlite").lower() in ("postgresql", "postgres", "pg")


def store_url(home: Path) -> str:
    """The store a test's drivers write to: FLYTE_LAB_DB_URL wins over the home's SQLite file, as in
    `RunStore.from_env`."""
    return os.environ.get("FLYTE_LAB_DB_URL") or f"sqlite:///{home}/store.db"


def store_exists(home: Path) -> bool:
    """Whether any command created the store (a PostgreSQL database exists empty: look for the migrations)."""
    url = store_url(home)
    if url.startswith("sqlite"):
        return (home / "store.db").exists()
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def query(home: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of one read-only SQL statement on the test's store, whichever database it is."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(store_url(home))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sqlalchemy.text(sql))]
    finally:
        engine.dispose()


class WriteLock:
    """Holds the store's write lock from another connection (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    advisory lock every write transaction of the store takes), so a driver's next write waits."""

    def __init__(self, home: Path) -> None:
        import sqlalchemy

        from flyte_lab.store.database import _PG_WRITE_LOCK

        self._engine = sqlalchemy.create_engine(store_url(home), isolation_level="AUTOCOMMIT")
        self._conn = self._engine.connect()
        if self._engine.dialect.name == "sqlite":
            self._conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
            self._conn.exec_driver_sql("BEGIN IMMEDIATE")
            self._release = "ROLLBACK"
        else:
            self._conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_WRITE_LOCK})")
            self._release = f"SELECT pg_advisory_unlock({_PG_WRITE_LOCK})"

    def release(self) -> None:
        self._conn.exec_driver_sql(self._release)
        self._conn.close()
        self._engine.dispose()
