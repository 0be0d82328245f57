"""Alembic driven from code, so the app, the CLI and tests upgrade the same way.

Human ratings cannot be regenerated, so every upgrade that has revisions to apply is guarded:

- One process migrates at a time: a file lock beside an SQLite file (``<db file>.migrate.lock``),
  an advisory lock on PostgreSQL. The others wait, find the schema at head and start.
- An SQLite file is copied first (online backup API) to
  ``<db folder>/backups/<db name>-<from revision>-<UTC time>.sqlite``.
- Migrations run with SQLite's foreign keys off: batch mode rebuilds a table by copy, DROP and
  rename, and with foreign keys on that DROP cascades into every child table (all ratings).
- Afterwards no table that existed before may have fewer rows and ``PRAGMA foreign_key_check``
  must report nothing new. Otherwise, or when a migration fails, the transaction is rolled back,
  the backup restored and the error raised.

A start that finds the schema at head only compares revisions: no lock, backup or counts.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Alembic's batch mode copies a table into this scratch name before swapping it in.
SCRATCH_PREFIX = "_alembic_tmp_"
# One advisory-lock id for the whole database (pg_advisory_lock takes a bigint).
PG_LOCK_KEY = zlib.crc32(b"faceagree-migrations")


class MigrationAborted(RuntimeError):
    """An upgrade would have lost data or could not run safely; the database is unchanged."""


def alembic_config(extra_version_dirs: Sequence[Path] = ()) -> Config:
    """An Alembic config for the project's migrations (no alembic.ini needed).

    It names no URL: env.py runs on the connection handed over in ``attributes`` (a URL would go
    through configparser, which chokes on the ``%`` of an encoded password or socket path).

    ``extra_version_dirs`` adds folders of revisions after the project's own chain (tests use it
    for throwaway migrations that must not enter db/migrations/versions).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if extra_version_dirs:
        folders = [MIGRATIONS_DIR / "versions", *extra_version_dirs]
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(map(str, folders)))
    return config


def upgrade(
    engine: Engine, revision: str = "head", *, extra_version_dirs: Sequence[Path] = ()
) -> None:
    """Bring the schema to ``revision`` under the lock, backup and row-count guard above."""
    config = alembic_config(extra_version_dirs)
    scripts = ScriptDirectory.from_config(config).get_revisions(revision)
    target = {script.revision for script in scripts}
    with engine.connect() as connection:
        if _current_revisions(connection) == target:
            return
    with _migration_connection(engine) as connection:
        if _current_revisions(connection) == target:
            return  # another process upgraded while this one waited for the lock
        _drop_scratch_tables(connection)
        _run_guarded(connection, config, lambda: command.upgrade(config, revision), check=True)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the schema back to ``revision`` (for developers; rows may legitimately go)."""
    config = alembic_config()
    with _migration_connection(engine) as connection:
        _run_guarded(connection, config, lambda: command.downgrade(config, revision), check=False)


def _current_revisions(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection holding the migration lock; on SQLite with foreign keys off."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection, _pg_advisory_lock(connection):
            yield connection
        return
    database = engine.url.database
    on_file = bool(database) and database != ":memory:"
    with FileLock(f"{database}.migrate.lock") if on_file else nullcontext():
        with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
            yield connection


@contextmanager
def _pg_advisory_lock(connection: Connection) -> Iterator[None]:
    """Session-level lock: survives the migration's commit, waits while another process holds it."""
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
        connection.commit()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    # The pragma is a no-op inside a transaction; the driver opens none before the first write,
    # and this is the connection's first statement. Read it back rather than trust that.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
        raise MigrationAborted("could not turn SQLite foreign keys off for the migration")
    try:
        yield
    finally:
        connection.rollback()  # the pool hands this connection out again: foreign keys back on
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _drop_scratch_tables(connection: Connection) -> None:
    """Drop batch-mode scratch copies a crashed migration left (they block the next rebuild)."""
    tables = set(inspect(connection).get_table_names())
    for scratch in sorted(name for name in tables if name.startswith(SCRATCH_PREFIX)):
        original = scratch.removeprefix(SCRATCH_PREFIX)
        if original not in tables:
            raise MigrationAborted(
                f"table {original!r} is missing and {scratch!r} may hold its only copy: "
                f"rename {scratch!r} to {original!r} by hand, then start again"
            )
        connection.exec_driver_sql(f'DROP TABLE "{scratch}"')
    connection.commit()


def _run_guarded(
    connection: Connection, config: Config, migrate: Callable[[], None], *, check: bool
) -> None:
    """Back up, run ``migrate`` on ``connection``, verify, commit; restore on any failure."""
    backup = _backup_sqlite(connection)
    rows_before = _row_counts(connection)
    violations_before = _foreign_key_violations(connection)
    config.attributes["connection"] = connection
    try:
        migrate()
        if check:
            _check_nothing_lost(connection, rows_before, violations_before)
        connection.commit()
    except Exception as error:
        connection.rollback()
        if backup is not None:
            _restore_sqlite(backup, connection)
            error.add_note(f"The database was restored from the backup {backup}.")
        raise


def _backup_sqlite(connection: Connection) -> Path | None:
    """Copy an SQLite file that holds tables into backups/ beside it, named by its revision."""
    database = connection.engine.url.database
    if connection.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if not inspect(connection).get_table_names():
        return None  # a new file: nothing to protect
    source = Path(database)
    revision = "+".join(sorted(_current_revisions(connection))) or "unversioned"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = source.parent / "backups" / f"{source.stem}-{revision}-{stamp}.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    copy = sqlite3.connect(target)
    try:
        connection.connection.driver_connection.backup(copy)
    finally:
        copy.close()
    return target


def _restore_sqlite(backup: Path, connection: Connection) -> None:
    source = sqlite3.connect(backup)
    try:
        source.backup(connection.connection.driver_connection)
    finally:
        source.close()


def _row_counts(connection: Connection) -> dict[str, int]:
    names = [
        name for name in inspect(connection).get_table_names()
        if name != "alembic_version" and not name.startswith(SCRATCH_PREFIX)
    ]
    return {name: connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in names}


def _foreign_key_violations(connection: Connection) -> set[tuple]:
    if connection.dialect.name != "sqlite":
        return set()  # PostgreSQL enforces foreign keys during migrations too
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


def _check_nothing_lost(
    connection: Connection, rows_before: dict[str, int], violations_before: set[tuple]
) -> None:
    rows_after = _row_counts(connection)
    lost = [
        f"{name}: {count} -> {rows_after.get(name, 'table gone')}"
        for name, count in rows_before.items()
        if rows_after.get(name, -1) < count
    ]
    if lost:
        raise MigrationAborted("the upgrade would lose rows (" + "; ".join(lost) + ")")
    broken = _foreign_key_violations(connection) - violations_before
    if broken:
        raise MigrationAborted(f"the upgrade left {len(broken)} rows pointing at missing parents "
                               f"(PRAGMA foreign_key_check, e.g. {next(iter(broken))})")
