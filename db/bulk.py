"""Large inserts on each backend's fast path: COPY on PostgreSQL, executemany elsewhere.

On PostgreSQL, SQLAlchemy's executemany sends multi-row INSERTs; COPY streams the rows instead
(bench/bench_jobs.py measures the difference on 100,000 ratings). Both run in the caller's
transaction, so an import stays all-or-nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

COPY_FROM_ROWS = 1000  # below this the plain INSERT is as fast and simpler to debug


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` in the session's transaction."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < COPY_FROM_ROWS:
        connection.execute(insert(table), rows)
        return
    from psycopg import sql

    columns = list(rows[0])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])
