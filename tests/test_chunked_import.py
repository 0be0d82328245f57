"""Rating imports in short chunked transactions, on real SQLite files in real processes (issue 7).

A batch is claimed as ``importing``, filled chunk by chunk (one short transaction each) and made
``active`` last: readers never see a half import, another writer never waits for the whole
import, a killed import leaves an invisible batch that the next import of its file removes once
its heartbeat is stale, and a failed import removes its half batch itself.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.io.tabular import read_table
from core.ratings.layouts import detect_mapping, prepare_ratings
from core.ratings.scales import PRESETS
from core.workflows.bundle import export_bundle
from db import ratings as rating_db
from db.analysis import load_ratings
from db.engine import make_engine
from db.migrate import upgrade
from db.models import ACTIVE, IMPORTING, Rating, RatingBatch, utcnow
from db.queries import study_counts
from db.ratings import (
    STALE_IMPORT, DuplicateFileError, declared_scales, import_batch_in_chunks, list_batches,
    remove_abandoned_imports, set_excluded, stimulus_index,
)
from db.stimuli import raters_per_stimulus, setup_progress
from db.versions import analysis_version
from tests.test_write_locks import add_stimuli, insert_batch, insert_pilot_study, worker

SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
MAX_WRITER_WAIT_S = 1.0


def rating_csv(path: Path, n_stimuli: int, n_raters: int) -> Path:
    path.write_text("rater,stimulus,valence,arousal\n" + "".join(
        f"R{r},img{s:04d}.png,{1 + (s + r) % 9},{1 + r % 9}\n"
        for s in range(n_stimuli) for r in range(n_raters)
    ))
    return path


def import_file(sessions: sessionmaker[Session], study_id: int, path: Path) -> int:
    data = path.read_bytes()
    frame = read_table(path.name, data)
    with sessions() as session:
        index = stimulus_index(session, study_id)
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=SAM)
    result = import_batch_in_chunks(sessions, study_id, prepared, file_name=path.name, data=data,
                                    actor=Role.OPERATOR)
    return result.batch_id


def what_readers_see(sessions: sessionmaker[Session], study_id: int) -> dict[str, object]:
    with sessions() as session:
        return {
            "counts": study_counts(session, study_id),
            "ratings": len(load_ratings(session, study_id)),
            "raters per stimulus": raters_per_stimulus(session, study_id),
            "batches": [batch.id for batch in list_batches(session, study_id)],
            "setup batches": setup_progress(session, study_id)["batches"],
            "version": analysis_version(session, study_id),
        }


def rows_in(sessions: sessionmaker[Session], state: str) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Rating).join(RatingBatch)
            .where(RatingBatch.import_state == state)
        )


def age_heartbeats(sessions: sessionmaker[Session], by: timedelta) -> None:
    """What the clock does to an import whose process is gone."""
    with sessions.begin() as session:
        session.execute(update(RatingBatch).where(RatingBatch.import_state == IMPORTING)
                        .values(import_heartbeat=utcnow() - by))


@pytest.mark.slow
def test_a_writer_waits_little_while_100k_ratings_import(sessions, db_url, tmp_path) -> None:
    """Another coauthor toggles "Excluded" over and over while another process imports 100,000
    ratings (before: the import held the write lock for the whole insert, 2-4 s)."""
    study_id = add_stimuli(sessions, 2000)
    with sessions.begin() as session:
        toggled = RatingBatch(study_id=study_id, file_name="other.csv", sha256="f", layout="long")
        session.add(toggled)
    csv = rating_csv(tmp_path / "big.csv", 2000, 50)
    ready, go = tmp_path / "ready", tmp_path / "go"
    go.touch()
    importer = worker("ratings", db_url, study_id, csv, ready, go, 2000)  # 50 chunks: a long overlap
    while not ready.exists() and importer.poll() is None:
        time.sleep(0.01)
    waits, saw_half_import = [], 0
    while importer.poll() is None:
        started = time.perf_counter()
        with sessions.begin() as session:
            set_excluded(session, toggled.id, len(waits) % 2 == 0, actor=Role.OPERATOR)
        waits.append(time.perf_counter() - started)
        saw_half_import += rows_in(sessions, IMPORTING) > 0
        time.sleep(0.02)
    out, err = importer.communicate()
    assert importer.returncode == 0, err
    assert out.startswith("stored")
    assert saw_half_import >= 1  # the writer really ran while chunks were going in (more when idle)
    assert max(waits) < MAX_WRITER_WAIT_S, f"longest wait {max(waits):.2f} s"
    assert rows_in(sessions, ACTIVE) == 100_000


def test_a_killed_import_stays_invisible_and_the_file_imports_again(sessions, db_url, tmp_path) -> None:
    study_id = add_stimuli(sessions, 200)
    first = import_file(sessions, study_id, rating_csv(tmp_path / "first.csv", 10, 3))
    before = what_readers_see(sessions, study_id)
    csv = rating_csv(tmp_path / "big.csv", 200, 50)  # 10,000 ratings in chunks of 250
    ready, go = tmp_path / "ready", tmp_path / "go"
    go.touch()
    importer = worker("ratings", db_url, study_id, csv, ready, go, 250)
    deadline = time.monotonic() + 60
    while rows_in(sessions, IMPORTING) == 0:
        assert importer.poll() is None and time.monotonic() < deadline, importer.communicate()
        time.sleep(0.005)
    os.kill(importer.pid, signal.SIGKILL)
    importer.wait()
    half = rows_in(sessions, IMPORTING)
    assert 0 < half < 10_000  # killed mid-way: some chunks committed
    assert what_readers_see(sessions, study_id) == before

    with pytest.raises(DuplicateFileError, match="being imported right now.*try again in a minute"):
        import_file(sessions, study_id, csv)  # its heartbeat is fresh: it may still be alive
    age_heartbeats(sessions, STALE_IMPORT + timedelta(seconds=1))
    again = import_file(sessions, study_id, csv)
    with sessions() as session:
        assert session.scalars(select(RatingBatch.id).order_by(RatingBatch.id)).all() == [first, again]
        assert session.scalar(select(func.count()).select_from(Rating)) == 30 + 10_000
    assert what_readers_see(sessions, study_id)["counts"]["ratings"] == 30 + 10_000


def test_a_failing_import_removes_its_half_batch_and_raises(sessions, tmp_path, monkeypatch) -> None:
    study_id = add_stimuli(sessions, 10)
    first = import_file(sessions, study_id, rating_csv(tmp_path / "first.csv", 10, 3))
    before = what_readers_see(sessions, study_id)
    monkeypatch.setattr(rating_db, "INSERT_CHUNK", 4)
    convert = rating_db._rating_columns
    seen = []

    def fails_after_the_first_chunk(ratings, batch_id):
        if seen:
            seen.append((rows_in(sessions, IMPORTING), what_readers_see(sessions, study_id)))
            raise RuntimeError("disk full")
        seen.append(None)
        return convert(ratings, batch_id)

    monkeypatch.setattr(rating_db, "_rating_columns", fails_after_the_first_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(sessions, study_id, rating_csv(tmp_path / "second.csv", 10, 5))
    assert seen[1] == (4, before)  # the first chunk was committed, and invisible
    with sessions() as session:
        assert session.scalars(select(RatingBatch.id)).all() == [first]
        assert session.scalar(select(func.count()).select_from(Rating)) == 30


def add_half_import(sessions, study_id: int, sha: str, heartbeat_age: timedelta) -> int:
    """An importing batch holding ratings, as a running (or dead) import leaves it."""
    with sessions.begin() as session:
        batch = RatingBatch(
            study_id=study_id, file_name=f"{sha}.csv", sha256=sha, dedupe_sha256=sha,
            layout="long", scales={"dominance": PRESETS["sam9"].to_dict()},
            import_state=IMPORTING, import_heartbeat=utcnow() - heartbeat_age,
        )
        session.add(batch)
        session.flush()
        stimulus_ids = [row[0] for row in session.execute(text("SELECT id FROM stimulus LIMIT 5"))]
        session.execute(insert(Rating), [
            {"batch_id": batch.id, "stimulus_id": s, "rater": "Ghost", "valence": 0.5}
            for s in stimulus_ids
        ])
        return batch.id


def test_every_reader_ignores_importing_batches(sessions, tmp_path) -> None:
    study_id = add_stimuli(sessions, 10)
    first = import_file(sessions, study_id, rating_csv(tmp_path / "first.csv", 10, 3))
    before = what_readers_see(sessions, study_id)
    add_half_import(sessions, study_id, "a" * 64, timedelta(0))
    assert what_readers_see(sessions, study_id) == before
    assert before["batches"] == [first] and before["counts"]["ratings"] == 30
    with sessions() as session:
        assert set(declared_scales(session, study_id)) == {"valence", "arousal"}
        exported = export_bundle(session, study_id, tmp_path / "study.zip", include_images=False)
    assert exported.n_batches == 1


def test_only_imports_with_a_stale_heartbeat_are_removed(sessions) -> None:
    study_id = add_stimuli(sessions, 10)
    alive = add_half_import(sessions, study_id, "a" * 64, timedelta(seconds=5))
    add_half_import(sessions, study_id, "b" * 64, STALE_IMPORT + timedelta(seconds=1))
    assert remove_abandoned_imports(sessions) == 1
    with sessions() as session:
        assert session.scalars(select(RatingBatch.id)).all() == [alive]
        assert session.scalar(select(func.count()).select_from(Rating)) == 5


def test_migration_0006_makes_every_existing_batch_active_and_keeps_every_row(db_url) -> None:
    engine = make_engine(db_url, migrate=False)
    upgrade(engine, "0003")
    with engine.begin() as connection:
        insert_pilot_study(connection)
        for batch_id, sha, deleted in ((1, "f", False), (2, "g", True), (3, "h", False)):
            insert_batch(connection, batch_id, sha, deleted)
            connection.execute(text("UPDATE rating_batch SET dedupe_sha256 = sha256"))
    upgrade(engine, "0006")
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, import_state, import_heartbeat FROM rating_batch ORDER BY id")).all()
        assert connection.execute(text("SELECT COUNT(*) FROM rating")).scalar() == 3
    assert rows == [(1, "active", None), (2, "active", None), (3, "active", None)]
    upgrade(engine)  # the typed models read the newest schema
    with Session(engine) as session:
        assert [batch.id for batch in list_batches(session, 1)] == [3, 2, 1]
        assert len(load_ratings(session, 1)) == 2
    engine.dispose()


def test_an_idle_worker_removes_abandoned_imports(sessions) -> None:
    """No one needs to import again: the worker's idle sweep clears a dead import's rows."""
    import threading

    from core.workflows.worker import Worker, WorkerSettings

    study_id = add_stimuli(sessions, 10)
    alive = add_half_import(sessions, study_id, "a" * 64, timedelta(seconds=5))
    add_half_import(sessions, study_id, "b" * 64, STALE_IMPORT + timedelta(seconds=1))
    messages: list[str] = []
    stop = threading.Event()
    worker = Worker(sessions, WorkerSettings(poll_s=0.01, sweep_s=3600), log=messages.append)
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    loop.join()
    assert messages == ["removed 1 abandoned rating import(s) (their process stopped mid-way)"]
    with sessions() as session:
        assert session.scalars(select(RatingBatch.id)).all() == [alive]
