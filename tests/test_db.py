"""Engine factory and migrations on a real SQLite file."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from db.engine import make_engine
from db.models import Base, Study
from db.queries import get_or_create_study, study_counts


def test_upgrade_of_empty_database_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_sqlite_pragmas_are_set(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_upgrade_twice_keeps_data(db_url: str, sessions) -> None:
    with sessions.begin() as session:
        get_or_create_study(session, "pilot")
    make_engine(db_url)  # a second start runs the migrations again
    with sessions() as session:
        assert session.query(Study).count() == 1
        assert study_counts(session, 1)["stimuli"] == 0
