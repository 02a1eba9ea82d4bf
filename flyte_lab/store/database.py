"""Opening the run store's database: the engine, its SQLite pragmas, migrations.

Kept apart from `run_store.py` so the API reads as queries only. Everything
dialect-specific lives here, behind `dialect == "sqlite"` / `"postgresql"`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

from flyte_lab.errors import NoStore, StoreTooNew, UserInputError
from flyte_lab.private_fs import create_private_file, make_private_dirs

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Execution option that asks for a write transaction (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "flyte_lab_write"
# Arbitrary constants naming the run store's advisory locks on PostgreSQL.
_PG_MIGRATION_LOCK = 7_262_017_311
_PG_WRITE_LOCK = 7_262_017_312
_SQLITE_BUSY_MS = 30_000


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "begin", _postgres_on_begin)
        return engine
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database
    if not database or database == ":memory:":
        # one shared connection, or every checkout would see its own empty database
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        # private: the folder 0700, the file 0600 (SQLite gives -wal/-shm the database file's mode)
        path = Path(database).expanduser()
        make_private_dirs(path.parent)
        create_private_file(path)
        engine = create_engine(
            url, connect_args={"timeout": _SQLITE_BUSY_MS / 1000, "check_same_thread": False}
        )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def shown_url(url: str) -> str:
    """The URL without its password, for messages; the raw text if it does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def refuse_url(url: str, source: str, err: BaseException) -> UserInputError:
    """One line naming where the URL came from and why it cannot be opened."""
    if isinstance(err, exc.NoSuchModuleError):
        reason = f"unknown database dialect `{make_url(url).drivername}`; use sqlite:/// or postgresql://"
    elif isinstance(err, exc.ArgumentError):
        reason = "not a database URL; expected e.g. sqlite:////path/store.db or postgresql://user@host/db"
    elif isinstance(err, ImportError):
        reason = f"its database driver is not installed ({err.name or err})"
    else:
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        reason = f"cannot open it ({detail[0][:200] if detail else type(err).__name__})"
    return UserInputError(f"{source}={shown_url(url)}: {reason}")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other dialects and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def require_existing(url: str) -> None:
    """Raise `NoStore` unless a run store exists at `url` (`StoreTooNew` if a newer flyte_lab made it);
    creates and changes nothing (no file, no folder, no table, no journal mode)."""
    path = sqlite_file(url)
    if path is not None:
        if not path.is_file():
            raise NoStore(f"no run store at {path}")
        if path.stat().st_size == 0:  # what SQLite calls an empty database, and a store being made right now
            raise NoStore(f"no run store at {path} (the file is empty)")
    elif make_url(url).get_backend_name() == "sqlite":
        return  # an in-memory database: empty but present
    engine = create_engine(url, pool_pre_ping=True)  # no WAL switch, no busy wait: this only looks
    try:
        if check_revision(engine) is None:
            raise NoStore(f"no run store at {path or shown_url(url)} (it holds no flyte_lab tables)")
    finally:
        engine.dispose()


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite: it would otherwise defer
    # BEGIN until the first write, and a read-then-write transaction could then
    # fail with "database is locked" instead of waiting its turn.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        _set_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _set_wal(cursor: Any) -> None:
    # Switching a fresh file to WAL needs an exclusive lock; when several
    # processes open it at once SQLite may answer "locked" without waiting.
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.fetchall()
            return
        except Exception as err:  # sqlite3.OperationalError, driver-agnostic
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front so concurrent writers queue on
    # busy_timeout; readers use a plain (deferred) snapshot transaction.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _postgres_on_begin(conn: Connection) -> None:
    # The same contract as SQLite's BEGIN IMMEDIATE: write transactions run one at a time.
    # Every protocol in the store (cache claim = lookup + insert, run claim, fire-time claim)
    # is a read-then-write that is correct when writers are serialised; under PostgreSQL's
    # READ COMMITTED two of them would both read "free" and then collide on a unique key.
    # The lock is transaction-scoped: it ends at COMMIT/ROLLBACK, also when a client dies.
    # Readers take no lock and see committed snapshots, as on SQLite in WAL mode.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An alembic `Config` built in code: no alembic.ini is needed at run time."""
    from alembic.config import Config

    cfg = Config()
    # ConfigParser interpolates `%`; escape it in paths and URLs
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def known_revisions() -> list[str]:
    """Every migration's revision, oldest first: revisions are linear and named by their file's 4-digit
    prefix (a test holds alembic to it), so opening a store never needs alembic to know them (~0.3 s)."""
    return sorted(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def head_revision() -> str | None:
    """The newest migration (opening a store that is up to date never imports alembic)."""
    names = known_revisions()
    return names[-1] if names else None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_revision(engine: Engine) -> str | None:
    """The store's revision (None: no store in it yet); `StoreTooNew` for one no migration here names."""
    current = current_revision(engine)
    if current is not None and current not in known_revisions():
        raise StoreTooNew(f"the run store at {engine.url.render_as_string(hide_password=True)} was written by a "
                          f"newer version of flyte_lab (schema revision `{current}`; this one knows up to "
                          f"`{head_revision()}`); upgrade flyte_lab to use it (the store was left as it is)")
    return current


def upgrade(engine: Engine) -> None:
    """`alembic upgrade head`, safe when several processes open a fresh store at once; a store a newer
    flyte_lab wrote is refused (`StoreTooNew`) before anything is written."""
    head = head_revision()
    if check_revision(engine) == head:
        return  # the common case: nothing to do, and no write lock taken
    write_engine = engine.execution_options(**{WRITE_OPTION: True})
    try:
        with write_engine.begin() as conn:
            # One transaction holds the lock for the whole upgrade, so a second
            # process waits here, then finds the tables made and does nothing.
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            if not _create_from_snapshot(conn, head):
                from alembic import command

                command.upgrade(alembic_config(connection=conn), "head")
    except (exc.OperationalError, exc.ProgrammingError, exc.IntegrityError):
        # Another process won a race this dialect does not serialise ("table
        # already exists", a duplicate alembic_version row): fine if it finished.
        if current_revision(engine) != head:
            raise


# A new SQLite store is made from the schema the migrations produce, recorded by `head_schema_sql` (a test
# holds the file to the migrations): the same tables, without importing alembic and replaying every migration
# (~0.3 s, paid by every first run in a new FLYTE_LAB_HOME).
HEAD_SQLITE_SQL = MIGRATIONS_DIR / "head-sqlite.sql"
_STATEMENT_END = "\n;\n"


def head_schema_sql(engine: Engine) -> str:
    """The schema of an SQLite store that is at the head revision, as the file `HEAD_SQLITE_SQL` holds it."""
    with engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        rows = conn.execute(text("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")).scalars()
        statements = [sql.strip() for sql in rows]
    header = f"-- The run store's SQLite schema at revision {revision}, as the migrations make it.\n" \
             "-- Generated by database.write_head_schema(); tests/test_run_store.py checks it\n"
    return header + "".join(statement + _STATEMENT_END for statement in statements)


def _create_from_snapshot(conn: Connection, head: str | None) -> bool:
    """Make the head schema in a new, empty SQLite database; False where migrations must run instead."""
    if conn.dialect.name != "sqlite" or head is None or not HEAD_SQLITE_SQL.is_file():
        return False
    if conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'table'")).scalar():
        return False  # not empty: an older store to migrate, or one made meanwhile by another process
    sql = HEAD_SQLITE_SQL.read_text()
    if f"at revision {head}," not in sql.split("\n", 1)[0]:
        return False  # a migration newer than the snapshot: replay them all
    for statement in sql.split(_STATEMENT_END):
        body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
        if body:
            conn.exec_driver_sql(body)
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
    return True


def upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE the other columns, on SQLite and PostgreSQL alike."""
    import importlib

    # only the dialect in use: importing PostgreSQL's (with asyncpg's) costs a SQLite store ~40 ms per process
    module: Any = importlib.import_module(
        "sqlalchemy.dialects.postgresql" if conn.dialect.name == "postgresql" else "sqlalchemy.dialects.sqlite")
    statement = module.insert(table).values(rows)
    columns = [c for c in rows[0] if c not in keys]
    conn.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={c: statement.excluded[c] for c in columns}))



def write_head_schema() -> None:
    """Regenerate `HEAD_SQLITE_SQL` after adding a migration:
    `python -c "from flyte_lab.store.database import write_head_schema; write_head_schema()"`."""
    import tempfile

    from alembic import command

    with tempfile.TemporaryDirectory() as folder:
        migrated = create_engine(f"sqlite:///{folder}/store.db")
        with migrated.begin() as connection:
            command.upgrade(alembic_config(connection=connection), "head")
        HEAD_SQLITE_SQL.write_text(head_schema_sql(migrated))
        migrated.dispose()
