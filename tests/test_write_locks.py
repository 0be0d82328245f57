"""Concurrent writers on a real SQLite file, in real processes (issue 7, items 2 and 3).

The duplicate-file guard is a unique index, so simultaneous imports of one rating file store
it once; a big stimulus import holds the write lock only briefly, so a coauthor's toggle of a
batch does not wait for it (before: for the whole import, past the 10 s busy timeout).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.access import Role
from db.engine import make_engine
from db.migrate import upgrade
from db.models import Rating, RatingBatch, Stimulus
from db.queries import get_or_create_study
from db.ratings import set_excluded

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "lock_workers.py"
N_STIMULI, N_RATERS = 400, 50  # 20,000 ratings: the first insert is slow enough to race
MAX_WRITER_WAIT_S = 1.5


def worker(*args: object) -> subprocess.Popen:
    command = [sys.executable, str(WORKER), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def add_stimuli(sessions, n: int) -> int:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "pilot", actor=Role.OPERATOR).id
        session.execute(insert(Stimulus), [
            {"study_id": study_id, "path": f"img{i:04d}.png", "sha256": f"{i:064x}",
             "media_type": "image/png", "width": 1, "height": 1, "thumbnail": b""}
            for i in range(n)
        ])
    return study_id


def test_four_processes_importing_one_file_store_it_once(sessions, db_url, tmp_path) -> None:
    study_id = add_stimuli(sessions, N_STIMULI)
    csv = tmp_path / "ratings.csv"
    csv.write_text("rater,stimulus,valence,arousal\n" + "".join(
        f"R{r},img{s:04d}.png,{1 + (s + r) % 9},{1 + r % 9}\n"
        for s in range(N_STIMULI) for r in range(N_RATERS)
    ))
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(4)]
    workers = [worker("ratings", db_url, study_id, csv, flag, go) for flag in ready]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), [
            w.communicate() for w in workers if w.poll() is not None]
        time.sleep(0.01)
    go.touch()
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    lines = sorted(out.strip() for out, _ in outputs)
    stored = [line for line in lines if line.startswith("stored")]
    assert len(stored) == 1, lines
    batch_id = int(stored[0].split()[1])
    duplicates = [line for line in lines if line.startswith("duplicate")]
    assert len(duplicates) == 3 and all(f"batch #{batch_id} (ratings.csv" in d for d in duplicates)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RatingBatch)) == 1
        assert session.scalar(select(func.count()).select_from(Rating)) == N_STIMULI * N_RATERS


def jpeg_zip(path: Path, n: int) -> None:
    """``n`` distinct 256x256 noisy JPEGs (decoding and thumbnails take real time)."""
    rng = np.random.default_rng(7)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(n):
            pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            archive.writestr(f"set/img_{index:04d}.jpg", buffer.getvalue())


@pytest.mark.slow
def test_a_writer_waits_little_while_a_big_zip_imports(sessions, db_url, tmp_path) -> None:
    """Another coauthor toggles "Excluded" over and over while 400 images import."""
    archive = tmp_path / "stimuli.zip"
    jpeg_zip(archive, 400)
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "main", actor=Role.OPERATOR).id
        batch = RatingBatch(study_id=study_id, file_name="r.csv", sha256="f", layout="long")
        session.add(batch)
    importer = worker("stimuli", db_url, study_id, archive)
    waits = []
    while importer.poll() is None:
        started = time.perf_counter()
        with sessions.begin() as session:
            set_excluded(session, batch.id, len(waits) % 2 == 0, actor=Role.OPERATOR)
        waits.append(time.perf_counter() - started)
        time.sleep(0.02)
    out, err = importer.communicate()
    assert importer.returncode == 0, err
    assert out.strip() == "added 400"
    assert len(waits) > 20  # the writer really ran during the import
    assert max(waits) < MAX_WRITER_WAIT_S, f"longest wait {max(waits):.2f} s"


def insert_pilot_study(connection) -> None:
    """Study 1 with stimulus 1 in raw SQL, for migration tests that start at an old schema."""
    connection.execute(text(
        "INSERT INTO study (id, name, description, is_demo, stimulus_key, key_case_insensitive,"
        " created_at) VALUES (1, 'pilot', '', 0, 'name', 1, '2026-01-01')"))
    connection.execute(text(
        "INSERT INTO stimulus (id, study_id, path, sha256, media_type, width, height, thumbnail,"
        " precropped, created_at) VALUES (1, 1, 'a.png', 'abc', 'image/png', 1, 1, x'00', 0,"
        " '2026-01-01')"))


def insert_batch(connection, batch_id: int, sha: str, deleted: bool = False) -> None:
    connection.execute(text(
        "INSERT INTO rating_batch (id, study_id, file_name, sha256, uploaded_by, uploaded_at,"
        " layout, mapping, scales, label_map, n_rows, n_rejected, excluded, deleted_at, note)"
        " VALUES (:id, 1, 'r.csv', :sha, '', '2026-01-01', 'long', '{}', '{}', '{}', 1, 0, 0,"
        " :deleted, :note)"),
        {"id": batch_id, "sha": sha, "deleted": "2026-01-02" if deleted else None,
         "note": "2 file rows rejected at import (rows 3, 4)." if batch_id == 3 else ""})
    connection.execute(text(
        "INSERT INTO rating (batch_id, stimulus_id, rater, valence) VALUES (:b, 1, 'R1', 0.5)"),
        {"b": batch_id})


def test_migration_0003_keeps_duplicates_imported_before_the_index(db_url: str) -> None:
    """Batches 1..3 hold the same file (the race stored it thrice), 4 is a deleted copy, 5 is
    another file: every batch and rating stays, the later copies become deliberate duplicates."""
    engine = make_engine(db_url, migrate=False)
    upgrade(engine, "0002")
    with engine.begin() as connection:
        insert_pilot_study(connection)
        for batch_id, sha, deleted in ((1, "f", False), (2, "f", False), (3, "f", False),
                                       (4, "f", True), (5, "g", False)):
            insert_batch(connection, batch_id, sha, deleted)
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, dedupe_sha256, note FROM rating_batch ORDER BY id")).all()
        assert connection.execute(text("SELECT COUNT(*) FROM rating")).scalar() == 5
    assert [(batch_id, key) for batch_id, key, _ in rows] == [
        (1, "f"), (2, None), (3, None), (4, "f"), (5, "g")]
    notes = {batch_id: note for batch_id, _, note in rows}
    assert notes[1] == notes[4] == notes[5] == ""
    assert "Same file as the earlier live batch #1" in notes[2]
    assert notes[3].startswith("2 file rows rejected") and "live batch #1" in notes[3]
    index = {ix["name"]: ix for ix in inspect(engine).get_indexes("rating_batch")}
    assert index["ux_rating_batch_live_file"]["unique"]
    assert index["ux_rating_batch_live_file"]["column_names"] == ["study_id", "dedupe_sha256"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        insert_batch(connection, 6, "g")
        connection.execute(text("UPDATE rating_batch SET dedupe_sha256 = 'g' WHERE id = 6"))


def busy_page(path: str) -> None:
    """A page whose write meets a database another connection keeps locked."""
    import sqlite3

    import streamlit as st
    from sqlalchemy import create_engine, text

    from ui.db_errors import friendly_writes

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # another import holding the write lock
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    with friendly_writes(stop=False), engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
    st.write("the callback-style write returned")
    with friendly_writes(), engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (2)"))
    st.write("never shown: the run stops after the message")


def test_a_locked_database_shows_the_busy_message(tmp_path) -> None:
    from streamlit.testing.v1 import AppTest

    from ui.db_errors import BUSY_MESSAGE

    app = AppTest.from_function(busy_page, args=(str(tmp_path / "busy.sqlite"),)).run()
    assert not app.exception
    assert [error.value for error in app.error] == [BUSY_MESSAGE, BUSY_MESSAGE]
    assert [text.value for text in app.markdown] == ["the callback-style write returned"]
