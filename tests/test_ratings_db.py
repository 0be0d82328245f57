"""Rating batches on a real SQLite file: transactions, duplicates, provenance, soft delete, CLI."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.cli import ratings as ratings_cli
from core.io.storage import sha256_bytes
from core.io.tabular import read_table
from core.ratings.layouts import detect_mapping, prepare_ratings
from core.ratings.scales import PRESETS
from db.analysis import load_ratings
from db.models import Rating, RatingBatch, Stimulus, utcnow
from db.queries import get_or_create_study
from db.ratings import (
    UNDO_WINDOW,
    DuplicateFileError,
    ImportRejected,
    UndoExpired,
    batch_file,
    batches_frame,
    delete_batch,
    import_batch,
    list_batches,
    purge_deleted,
    set_excluded,
    stimulus_index,
    undo_delete,
)

pytestmark = pytest.mark.backends

SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
GOOD = "rater,stimulus,emotion,valence,arousal\nP1,img01.png,happy,9,5\nP2,img01.png,sad,1,5\n"
WITH_BAD_ROW = GOOD + "P3,img99.png,sad,3,3\n"


@pytest.fixture
def study(sessions: sessionmaker[Session]) -> int:
    """A study with three stimuli inserted directly (the image pipeline is tested elsewhere)."""
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "pilot", actor=Role.OPERATOR).id
        for number in (1, 2, 3):
            session.add(Stimulus(
                study_id=study_id, path=f"set/img0{number}.png", sha256=f"{number:064x}",
                media_type="image/png", width=1, height=1, thumbnail=b"",
            ))
    return study_id


def prepared_from(sessions, study_id: int, text: str, name: str = "r.csv", **options):
    data = text.encode("utf-8")
    frame = read_table(name, data)
    with sessions() as session:
        index = stimulus_index(session, study_id)
    codes = options.get("codes")
    prepared = prepare_ratings(
        frame, detect_mapping(frame, index, codes), index=index,
        scales=options.get("scales", SAM), codes=codes,
    )
    return prepared, data


def store(sessions, study_id: int, text: str, name: str = "r.csv", **options) -> int:
    prepared, data = prepared_from(sessions, study_id, text, name)
    with sessions.begin() as session:
        return import_batch(session, study_id, prepared, file_name=name, data=data, **options, actor=Role.OPERATOR).batch_id


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_import_stores_ratings_and_provenance(sessions, study: int) -> None:
    batch_id = store(sessions, study, GOOD, uploaded_by="Ana")
    with sessions() as session:
        batch = session.get(RatingBatch, batch_id)
        assert (batch.file_name, batch.uploaded_by, batch.layout) == ("r.csv", "Ana", "long")
        assert batch.sha256 == sha256_bytes(GOOD.encode())
        assert batch.mapping["columns"]["valence"] == "valence"
        assert batch.scales["valence"] == {"name": "sam9", "low": 1.0, "high": 9.0}
        assert batch.uploaded_at is not None and batch.n_rows == 2
        assert batch_file(session, batch_id) == GOOD.encode()  # the upload itself is kept
        frame = load_ratings(session, study)
        raw = session.execute(select(Rating.valence_raw, Rating.emotion_raw)).all()
    assert sorted(frame["valence"]) == [-1.0, 1.0]
    assert sorted(raw) == [(1.0, "sad"), (9.0, "happy")]


def test_bad_rows_without_partial_store_nothing_and_keep_existing_batches(sessions, study) -> None:
    store(sessions, study, GOOD)
    prepared, data = prepared_from(sessions, study, WITH_BAD_ROW, "second.csv")
    with pytest.raises(ImportRejected, match="1 of 3 rows"):
        with sessions.begin() as session:
            import_batch(session, study, prepared, file_name="second.csv", data=data, actor=Role.OPERATOR)
    assert count(sessions, RatingBatch) == 1 and count(sessions, Rating) == 2


def test_partial_import_stores_valid_rows_and_returns_the_rejected(sessions, study) -> None:
    prepared, data = prepared_from(sessions, study, WITH_BAD_ROW)
    with sessions.begin() as session:
        result = import_batch(session, study, prepared, file_name="r.csv", data=data, partial=True, actor=Role.OPERATOR)
    assert result.n_ratings == 2 and result.rejected_rows == [4]
    with sessions() as session:
        batch = session.get(RatingBatch, result.batch_id)
        assert batch.n_rejected == 1 and "rows 4" in batch.note


def test_a_failing_insert_rolls_back_the_whole_batch(sessions, study) -> None:
    """All-or-nothing at the database level: one row the database refuses (a stimulus that
    vanished after validation) leaves neither the new batch nor any of its ratings."""
    store(sessions, study, GOOD)
    prepared, data = prepared_from(sessions, study, GOOD.replace("P1", "P9"), "next.csv")
    prepared.ratings.loc[1, "stimulus_id"] = 999_999
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            import_batch(session, study, prepared, file_name="next.csv", data=data, actor=Role.OPERATOR)
    assert count(sessions, RatingBatch) == 1 and count(sessions, Rating) == 2


def test_no_valid_rows_is_rejected_even_when_partial(sessions, study) -> None:
    prepared, data = prepared_from(sessions, study, "rater,stimulus,emotion\nP1,nope.png,sad\n")
    with pytest.raises(ImportRejected, match="no valid rows"):
        with sessions.begin() as session:
            import_batch(session, study, prepared, file_name="r.csv", data=data, partial=True, actor=Role.OPERATOR)
    assert count(sessions, RatingBatch) == 0


def test_the_same_file_twice_is_detected(sessions, study) -> None:
    first = store(sessions, study, GOOD, uploaded_by="Ana")
    with pytest.raises(DuplicateFileError, match=f"batch #{first}.*Ana"):
        store(sessions, study, GOOD, name="renamed.csv")
    second = store(sessions, study, GOOD, name="renamed.csv", allow_duplicate=True)
    assert second != first and count(sessions, RatingBatch) == 2


def test_a_deleted_batch_does_not_block_its_file(sessions, study) -> None:
    first = store(sessions, study, GOOD)
    with sessions.begin() as session:
        delete_batch(session, first, actor=Role.OPERATOR)
    assert store(sessions, study, GOOD) != first


def test_votes_get_batch_scoped_anonymous_raters(sessions, study) -> None:
    votes = "Image name,neutral,happiness,sadness\nimg01.png,2,1,0\nimg02.png,0,0,3\n"
    batch_id = store(sessions, study, votes)
    with sessions() as session:
        raters = sorted(session.scalars(select(Rating.rater).where(Rating.stimulus_id == 1)))
        assert raters == [f"votes#{batch_id}:{k}" for k in (1, 2, 3)]
        assert session.get(RatingBatch, batch_id).layout == "votes"


def test_exclude_and_include_change_what_analyses_see(sessions, study) -> None:
    batch_id = store(sessions, study, GOOD)
    with sessions.begin() as session:
        set_excluded(session, batch_id, True, actor=Role.OPERATOR)
    with sessions() as session:
        assert load_ratings(session, study).empty
        assert list_batches(session, study)[0].excluded
    with sessions.begin() as session:
        set_excluded(session, batch_id, False, actor=Role.OPERATOR)
    with sessions() as session:
        assert len(load_ratings(session, study)) == 2


def test_soft_delete_undo_and_purge(sessions, study) -> None:
    old, recent = store(sessions, study, GOOD), store(sessions, study, GOOD, allow_duplicate=True)
    now = utcnow()
    with sessions.begin() as session:
        delete_batch(session, old, now=now - UNDO_WINDOW - timedelta(minutes=1), actor=Role.OPERATOR)
        deadline = delete_batch(session, recent, now=now, actor=Role.OPERATOR)
    assert deadline == now + UNDO_WINDOW
    with sessions() as session:
        assert load_ratings(session, study).empty  # deleted batches leave every analysis
        summaries = {b.id: b for b in list_batches(session, study)}
    assert summaries[recent].undo_until is not None and summaries[old].undo_until is None
    with pytest.raises(UndoExpired, match="more than"):
        with sessions.begin() as session:
            undo_delete(session, old, actor=Role.OPERATOR)
    with sessions.begin() as session:
        undo_delete(session, recent, actor=Role.OPERATOR)
        assert purge_deleted(session, actor=Role.OPERATOR) == 1
    with sessions() as session:
        assert [b.id for b in list_batches(session, study)] == [recent]
        assert len(load_ratings(session, study)) == 2
    assert count(sessions, Rating) == 2  # the purged batch's ratings are gone too


def test_undo_of_a_live_batch_is_refused(sessions, study) -> None:
    batch_id = store(sessions, study, GOOD)
    with pytest.raises(UndoExpired, match="not deleted"):
        with sessions.begin() as session:
            undo_delete(session, batch_id, actor=Role.OPERATOR)


def test_batch_list_counts_and_table(sessions, study) -> None:
    store(sessions, study, GOOD, uploaded_by="Ana")
    with sessions() as session:
        (summary,) = list_batches(session, study)
        table = batches_frame([summary])
    assert (summary.n_ratings, summary.n_raters, summary.n_stimuli) == (2, 2, 1)
    assert table.loc[0, "uploaded by"] == "Ana"
    assert "SAM 1-9" in table.loc[0, "scales"]


# ------------------------------------------------------------------------------ command line


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    ratings_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_cli_import_partial_and_duplicate(sessions, study, db_url, tmp_path: Path, capsys) -> None:
    source = tmp_path / "평가.csv"
    source.write_text(
        "participant;image;emotion;valence;arousal\nP1;img01.png;1;4,5;5\nP2;img09.png;sad;1;1\n",
        encoding="utf-8-sig",
    )
    common = ["--db", db_url, "import-ratings", "--study", "pilot", str(source), "--code", "1=anger"]
    assert cli(*common) == 2  # scales not declared
    assert "--valence-scale" in capsys.readouterr().out
    scaled = [*common, "--valence-scale", "sam9", "--arousal-scale", "1..9", "--by", "Ana"]
    assert cli(*scaled) == 1  # row 3 names an unknown stimulus
    assert count(sessions, RatingBatch) == 0
    assert cli(*scaled, "--partial") == 0
    rejected = read_table("r.csv", (tmp_path / "평가.csv.rejected.csv").read_bytes())
    assert rejected["file_row"].tolist() == ["3"]
    assert cli(*scaled, "--partial") == 1  # the same file again
    assert "already imported" in capsys.readouterr().err
    with sessions() as session:
        (batch,) = list_batches(session, study)
        assert (batch.uploaded_by, batch.label_map) == ("Ana", {"1": "anger"})
        assert load_ratings(session, study)["emotion"].tolist() == ["anger"]


def test_cli_overrides_layout_mapping_and_dimension(sessions, study, db_url, tmp_path) -> None:
    source = tmp_path / "wide.csv"
    source.write_text("who,img01.png,img02.png\nP1,3,4\nP2,5,6\n")
    assert cli("--db", db_url, "import-ratings", "--study", "pilot", str(source),
               "--layout", "wide_rater", "--map", "rater=who", "--dimension", "valence",
               "--valence-scale", "1-7") == 0
    with sessions() as session:
        frame = load_ratings(session, study)
    assert sorted(frame["rater"].unique()) == ["P1", "P2"] and len(frame) == 4


def test_cli_reports_unknown_study_and_unreadable_file(study, db_url, tmp_path, capsys) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert cli("--db", db_url, "import-ratings", "--study", "pilot", str(empty)) == 2
    assert "empty" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert cli("--db", db_url, "import-ratings", "--study", "nope", str(good)) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_undo_is_refused_while_the_file_is_imported_again(sessions, study) -> None:
    """The unique index allows one live guarded batch per file: restoring the deleted copy
    would double the ratings, so undo names the live batch instead."""
    first = store(sessions, study, GOOD)
    with sessions.begin() as session:
        delete_batch(session, first, actor=Role.OPERATOR)
    again = store(sessions, study, GOOD)
    with pytest.raises(DuplicateFileError, match=f"batch #{again}"):
        with sessions.begin() as session:
            undo_delete(session, first, actor=Role.OPERATOR)
    with sessions.begin() as session:
        delete_batch(session, again, actor=Role.OPERATOR)
        undo_delete(session, first, actor=Role.OPERATOR)
    with sessions() as session:
        assert [b.id for b in list_batches(session, study, include_deleted=False)] == [first]
