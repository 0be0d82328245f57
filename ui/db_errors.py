"""A lock timeout during a page's write becomes a clear message instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.exc import OperationalError

from core.access import PermissionDenied
from ui.text import plain

BUSY_MESSAGE = "The database is busy with another import; try again in a moment."
# SQLite: "database is locked" / "database table is locked"; PostgreSQL: lock_timeout expired.
LOCK_TIMEOUT_TEXTS = ("is locked", "lock timeout", "could not obtain lock")


def is_lock_timeout(error: OperationalError) -> bool:
    """True when ``error`` is a writer that gave up waiting for another writer's lock."""
    text = str(error.orig).lower()
    return any(marker in text for marker in LOCK_TIMEOUT_TEXTS)


@contextmanager
def friendly_writes(*, stop: bool = True) -> Iterator[None]:
    """Show :data:`BUSY_MESSAGE` when a write inside times out on a lock (nothing was stored),
    and the refusal when the session's role may not do the write.

    In the script body the run then stops (code after the block may need the write's result);
    in widget callbacks pass ``stop=False``: the message shows and the callback returns.
    """
    try:
        yield
    except PermissionDenied as error:  # the write function's own guard: this role may not
        st.error(plain(error), icon=":material/lock:")
        if stop:
            st.stop()
    except OperationalError as error:
        if not is_lock_timeout(error):
            raise
        st.error(BUSY_MESSAGE, icon=":material/hourglass_top:")
        if stop:
            st.stop()
