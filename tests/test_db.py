"""Engine factory and migrations on a real SQLite file (and PostgreSQL where marked)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.access import Role
from db.engine import make_engine
from db.models import Base, Study
from db.queries import get_or_create_study, study_counts


@pytest.mark.backends
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


@pytest.mark.backends
def test_upgrade_twice_keeps_data(db_url: str, sessions) -> None:
    with sessions.begin() as session:
        get_or_create_study(session, "pilot", actor=Role.OPERATOR)
    make_engine(db_url)  # a second start runs the migrations again
    with sessions() as session:
        assert session.query(Study).count() == 1
        assert study_counts(session, 1)["stimuli"] == 0


@pytest.mark.backends
def test_upgrade_from_0001_scopes_imported_predictions_and_keeps_ratings(db_url: str) -> None:
    """Revision 0002 adds prediction.study_id: earlier imported rows get their study, computed
    rows stay shared, and the human ratings already stored are untouched."""
    from db.migrate import upgrade

    engine = make_engine(db_url, migrate=False)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO study (id, name, description, is_demo, stimulus_key, key_case_insensitive,"
            " created_at) VALUES (1, 'pilot', '', FALSE, 'name', TRUE, '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO stimulus (id, study_id, path, sha256, media_type, width, height, thumbnail,"
            " precropped, created_at) VALUES (1, 1, 'a.png', 'abc', 'image/png', 1, 1, :thumbnail,"
            " FALSE, '2026-01-01')"), {"thumbnail": b"\x00"})
        connection.execute(text(
            "INSERT INTO rating_batch (id, study_id, file_name, sha256, uploaded_by, uploaded_at,"
            " layout, mapping, scales, label_map, n_rows, n_rejected, excluded, note) VALUES"
            " (1, 1, 'r.csv', 'f', '', '2026-01-01', 'long', '{}', '{}', '{}', 1, 0, FALSE, '')"))
        connection.execute(text(
            "INSERT INTO rating (batch_id, stimulus_id, rater, emotion, valence) VALUES"
            " (1, 1, 'R1', 'anger', -0.5)"))
        for model, preprocessing in (("facereader", "imported"), ("enet", "emotiefflib-v1")):
            connection.execute(text(
                "INSERT INTO prediction (stimulus_sha256, model_id, checkpoint_sha256, preprocessing,"
                " detector, status, created_at) VALUES ('abc', :m, 'w', :p, 'd', 'ok', '2026-01-01')"),
                {"m": model, "p": preprocessing})
    make_engine(db_url)
    with engine.connect() as connection:
        scoped = dict(connection.execute(text("SELECT model_id, study_id FROM prediction")).all())
        assert scoped == {"facereader": 1, "enet": None}
        assert connection.execute(text("SELECT rater, valence FROM rating")).all() == [("R1", -0.5)]
