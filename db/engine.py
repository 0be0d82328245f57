"""Engine factory: the SQLite default and any SQLAlchemy URL through one code path.

The URL comes from (first match): an explicit argument, the ``FACEAGREE_DB_URL`` environment
variable, or an SQLite file ``faceagree.sqlite`` in the data folder (``FACEAGREE_DATA_DIR``,
default ``./data``). Tests use the same factory with a temporary file.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# The data folder is a pure value (core.io.paths); re-exported for callers that configure both.
from core.io.paths import DATA_DIR_ENV, data_dir

DB_URL_ENV = "FACEAGREE_DB_URL"


def default_url() -> str:
    """The database URL in force when none is passed explicitly."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir() / 'faceagree.sqlite'}"


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the dashboard) never block the writer (an import or an inference run).
    cursor.execute("PRAGMA journal_mode=WAL")
    # SQLite ships with foreign keys off; ratings must never point at a missing stimulus.
    # (db.migrate turns them off for its own connection: a batch rebuild's DROP would cascade.)
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL is durable under WAL except on power loss, and much faster than FULL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Wait for a concurrent writer instead of failing at once with "database is locked".
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# The sqlite3 driver opens transactions itself (before the first write, not before reads). That
# keeps a page's read-then-write units from failing when another process wrote in between, but
# it makes SAVEPOINTs commit early: imports are all-or-nothing per transaction and never rely on
# nested transactions (tests/test_bad_input.py checks that a failed import stores nothing).
def make_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Create an engine for ``url`` (default: :func:`default_url`), upgraded to the newest schema.

    At head this costs one revision read; otherwise db.migrate locks, backs up and guards.
    """
    url = url or default_url()
    is_sqlite = url.startswith("sqlite")
    if is_sqlite and ":memory:" not in url:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30} if is_sqlite else {})
    if is_sqlite:
        event.listen(engine, "connect", _set_sqlite_pragmas)
    if migrate:
        from db.migrate import upgrade

        upgrade(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory; use one ``with factory.begin() as session:`` per unit of work."""
    return sessionmaker(engine, expire_on_commit=False)
