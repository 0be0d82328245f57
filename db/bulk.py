"""Large inserts on each backend's fast path: COPY on PostgreSQL, the driver's executemany elsewhere.

On PostgreSQL, SQLAlchemy's executemany sends multi-row INSERTs; COPY streams the rows instead
(bench/bench_jobs.py measures the difference on 100,000 ratings). On SQLite, SQLAlchemy's
per-row parameter handling took a third of the time at 100k rows, so plain tuples go straight to
the driver. Both run in the caller's transaction, so an import stays all-or-nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

COPY_FROM_ROWS = 1000  # below this the plain INSERT is as fast and simpler to debug


def insert_columns(session: Session, table: Table, columns: dict[str, list[Any]]) -> None:
    """Insert the rows given column-wise (name -> equally long lists of plain Python values,
    None for NULL) into ``table`` in the session's transaction."""
    connection = session.connection()
    n_rows = len(next(iter(columns.values()), []))
    if connection.dialect.name == "postgresql" and n_rows >= COPY_FROM_ROWS:
        _copy(connection, table, columns)
        return
    compiled = insert(table).compile(
        dialect=connection.dialect, column_keys=list(columns),
        for_executemany=True,  # no RETURNING (PostgreSQL would add one for a single row)
    )
    names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
    values = [_column_values(table, columns, name, n_rows) for name in names]
    if compiled.positional:
        rows: list[Any] = list(zip(*values))
    else:
        rows = [dict(zip(names, row)) for row in zip(*values)]
    connection.exec_driver_sql(compiled.string, rows)


def _column_values(table: Table, columns: dict[str, list[Any]], name: str, n_rows: int) -> list[Any]:
    """The given values, or the column's scalar Python default (SQLAlchemy binds every column
    that has one, e.g. ``rating.occurrence``) for callers that leave it out."""
    if name in columns:
        return columns[name]
    default = table.c[name].default
    if default is None or not default.is_scalar:
        raise KeyError(f"no values for column {name!r} of {table.name}")
    return [default.arg] * n_rows


def _copy(connection, table: Table, columns: dict[str, list[Any]]) -> None:
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in zip(*columns.values()):
            copy.write_row(row)
