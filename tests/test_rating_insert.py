"""How rating rows reach the database: chunked driver executemany, both parameter styles."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.ratings.layouts import detect_mapping, prepare_ratings
from core.ratings.scales import PRESETS
from core.io.tabular import read_table
from db import ratings as rating_db
from db.models import Rating, Stimulus
from db.queries import get_or_create_study

RATINGS = (
    "rater,stimulus,emotion,valence,arousal\n"
    "P1,img01.png,happy,9,5\nP2,img01.png,,1,\nP3,img01.png,sad,,\n"
    "P1,img02.png,anger,5,5\nP2,img02.png,fear,2,8\n"
)
VOTES = "image,happy,sad,neutral\nimg01.png,2,1,0\nimg02.png,0,3,0\n"
STORED = ["stimulus_id", "rater", "emotion", "emotion_raw", "valence", "arousal",
          "valence_raw", "arousal_raw"]


def import_file(factory: sessionmaker[Session], text: str) -> list[tuple]:
    data = text.encode()
    frame = read_table("r.csv", data)
    with factory.begin() as session:
        study_id = get_or_create_study(session, "pilot", actor=Role.OPERATOR).id
        for number in (1, 2):
            if not session.scalar(select(Stimulus).where(Stimulus.path == f"img0{number}.png")):
                session.add(Stimulus(
                    study_id=study_id, path=f"img0{number}.png", sha256=f"{number:064x}",
                    media_type="image/png", width=1, height=1, thumbnail=b"",
                ))
        session.flush()
        index = rating_db.stimulus_index(session, study_id)
        prepared = prepare_ratings(
            frame, detect_mapping(frame, index), index=index,
            scales={"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]},
        )
        assert prepared.ok, prepared.errors
        batch_id = rating_db.import_batch(
            session, study_id, prepared, file_name="r.csv", data=data, actor=Role.OPERATOR
        ).batch_id
        columns = [getattr(Rating, name) for name in STORED]
        return [
            tuple(row) for row in
            session.execute(select(*columns).where(Rating.batch_id == batch_id).order_by(Rating.id))
        ]


@pytest.fixture(params=["qmark", "named"])
def factory(request, sessions, db_url) -> sessionmaker[Session]:
    """The migrated test database through SQLite's positional and named parameter styles."""
    if request.param == "qmark":
        yield sessions
        return
    engine = create_engine(db_url, paramstyle="named")
    yield sessionmaker(engine)
    engine.dispose()


def test_rows_are_stored_with_nulls_across_chunk_boundaries(factory, monkeypatch) -> None:
    monkeypatch.setattr(rating_db, "INSERT_CHUNK", 2)
    stored = import_file(factory, RATINGS)
    assert [row[1] for row in stored] == ["P1", "P2", "P3", "P1", "P2"]
    assert stored[1][2:] == (None, None, -1.0, None, 1.0, None)
    assert stored[2][4:] == (None, None, None, None)
    assert stored[0][4:] == (1.0, 0.0, 9.0, 5.0)
    assert all(isinstance(row[0], int) for row in stored)


def test_vote_raters_carry_their_batch_in_every_chunk(factory, monkeypatch) -> None:
    monkeypatch.setattr(rating_db, "INSERT_CHUNK", 4)
    stored = import_file(factory, VOTES)
    raters = [row[1] for row in stored]
    assert len(raters) == 6 and all(r.startswith("votes#1:") for r in raters)
    assert sorted(row[2] for row in stored) == ["happiness"] * 2 + ["sadness"] * 4
