"""db.bulk.insert_columns: COPY on PostgreSQL and executemany on SQLite store the same values."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.access import Role
from db.bulk import COPY_FROM_ROWS, insert_columns
from db.models import Rating, RatingBatch, Stimulus
from db.queries import get_or_create_study

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("n", [3, COPY_FROM_ROWS + 7])
def test_rows_round_trip_with_missing_values_and_odd_text(sessions, n):
    with sessions.begin() as session:
        study = get_or_create_study(session, "bulk", actor=Role.OPERATOR)
        stimulus = Stimulus(study_id=study.id, path="a.png", sha256="a" * 64, media_type="image/png",
                            width=1, height=1, thumbnail=b"")
        batch = RatingBatch(study_id=study.id, file_name="r.csv", sha256="b" * 64, layout="long")
        session.add_all([stimulus, batch])
        session.flush()
        rows = [{"batch_id": batch.id, "stimulus_id": stimulus.id, "rater": f"R{i}\t'\"\\ 😀",
                 "emotion": None if i % 3 else "happy", "valence": None if i % 2 else i / 7,
                 "arousal": -0.5} for i in range(n)]
        insert_columns(session, Rating.__table__, {name: [row[name] for row in rows] for name in rows[0]})
    with sessions() as session:
        stored = session.execute(select(Rating.rater, Rating.emotion, Rating.valence, Rating.arousal)
                                 .order_by(Rating.id)).all()
    assert [tuple(row) for row in stored] == [
        (row["rater"], row["emotion"], row["valence"], row["arousal"]) for row in rows]
