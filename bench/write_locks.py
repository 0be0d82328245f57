"""How long each write transaction of an engine holds SQLite's write lock.

pysqlite begins a transaction at the first INSERT/UPDATE/DELETE, which takes the write lock;
the lock is released at COMMIT or ROLLBACK. Other writers wait that long (up to busy_timeout).
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, event

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteLockTimer:
    """Records the duration of every write transaction on ``engine`` (seconds, in order)."""

    def __init__(self, engine: Engine) -> None:
        self.durations: list[float] = []
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    @property
    def longest(self) -> float:
        return max(self.durations, default=0.0)

    def _before_execute(self, connection, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            self._started.setdefault(id(connection), time.perf_counter())

    def _end(self, connection) -> None:
        started = self._started.pop(id(connection), None)
        if started is not None:
            self.durations.append(time.perf_counter() - started)
