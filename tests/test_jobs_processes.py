"""Concurrency and durability with real processes (``python -m core ...``), on SQLite and on
PostgreSQL: concurrent rating imports, two workers sharing one queue, kill -9 of a worker in the
middle of a model run and of an import in the middle of its transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from core.access import Role
from core.workflows import jobs
from db.models import Job, Prediction, Rating, RatingBatch, utcnow, visible_batches
from db.ratings import STALE_IMPORT
from tests.conftest import ROOT
from tests.job_helpers import make_image_study, register_tiny_model

pytestmark = [pytest.mark.backends, pytest.mark.slow]
SCALES = ["--valence-scale", "sam9", "--arousal-scale", "sam9"]


def core_process(db_url: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    """``python -m core --db URL args`` in its own process (environment: this test's data dir)."""
    output = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "core", "--db", db_url, *args], cwd=ROOT,
                            stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy())


def wait_for(condition, timeout: float = 180, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition.__name__}")
        time.sleep(every)


def count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def rating_file(folder: Path, name: str, raters: list[str], n_stimuli: int) -> Path:
    lines = ["rater,stimulus,emotion,valence,arousal"]
    lines += [f"{rater},img{s:04d}.png,happy,{1 + (s % 9)},{1 + (len(rater) + s) % 9}"
              for rater in raters for s in range(n_stimuli)]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Only the ratings commands: the full CLI would load PyTorch in each of the four processes.
IMPORT_ROUNDS = """
import argparse, sys
from core.cli import ratings
parser = argparse.ArgumentParser()
parser.add_argument("--db")
ratings.register(parser.add_subparsers(dest="command"))
db_url, *files = sys.argv[1:]
for path in files:  # one batch per round
    args = parser.parse_args(["--db", db_url, "import-ratings", "--study", "shared", path,
                              "--valence-scale", "sam9", "--arousal-scale", "sam9"])
    assert args.handler(args) == 0, path
"""


def test_four_processes_importing_five_rounds_store_every_rating_exactly_once(db_url, sessions, tmp_path):
    make_image_study(sessions, 20, name="shared")
    processes, expected = [], set()
    for proc in range(4):
        files = []
        for round_ in range(5):
            raters = [f"p{proc}r{round_}x{k}" for k in range(10)]
            files.append(str(rating_file(tmp_path, f"p{proc}-r{round_}.csv", raters, 20)))
            expected |= {(rater, f"img{s:04d}.png") for rater in raters for s in range(20)}
        log = open(tmp_path / f"importer{proc}.log", "w")
        processes.append((subprocess.Popen([sys.executable, "-c", IMPORT_ROUNDS, db_url, *files],
                                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log.name))
    for process, log in processes:
        assert process.wait(600) == 0, Path(log).read_text()[-2000:]
    with sessions() as session:
        stored = session.execute(text(
            "SELECT rating.rater, stimulus.path FROM rating JOIN stimulus ON stimulus.id = rating.stimulus_id"
        )).all()
        assert session.scalar(select(func.count()).select_from(RatingBatch)) == 20
        assert set(session.scalars(select(RatingBatch.n_rows))) == {200}
    assert len(stored) == len(expected) == 4000
    assert set(map(tuple, stored)) == expected


def test_two_workers_on_one_queue_run_each_of_twenty_jobs_exactly_once(db_url, sessions, tmp_path):
    study_id = make_image_study(sessions, 3)
    job_ids = [jobs.enqueue(sessions, "face_stage", study_id, {"detector": "haar"}, actor=Role.OPERATOR) for _ in range(20)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [core_process(db_url, "worker", "--device", "cpu", "--poll", "0.05",
                            "--name", f"w{i}", log=log) for i, log in enumerate(logs)]
    try:
        wait_for(lambda: count(sessions, Job, Job.state == "done") == 20)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
    claims = [line.split(":")[0] for log in logs for line in log.read_text().splitlines()
              if line.startswith("job ") and "face stage" in line]
    assert sorted(claims) == sorted(f"job {job_id}" for job_id in job_ids)
    with sessions() as session:
        assert set(session.scalars(select(Job.attempts))) == {1}
        assert set(session.scalars(select(Job.worker))) <= {"w0", "w1"}


def test_a_killed_worker_s_job_is_requeued_and_resumes_without_recomputing(db_url, sessions, tmp_path):
    register_tiny_model(sessions)
    study_id = make_image_study(sessions, 300, size=256)
    job_id = jobs.enqueue(sessions, "model_run", study_id, {"models": ["tiny"], "batch_size": 1}, actor=Role.OPERATOR)
    lease = ["--lease", "2", "--heartbeat", "0.3", "--poll", "0.1", "--device", "cpu"]
    first = core_process(db_url, "worker", "--name", "doomed", *lease, log=tmp_path / "a.log")
    wait_for(lambda: count(sessions, Prediction) >= 10)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    with sessions() as session:
        before = dict(session.execute(select(Prediction.id, Prediction.stimulus_sha256)).all())
        assert session.get(Job, job_id).state == "running"  # nobody told the database
    assert 10 <= len(before) < 300
    second = core_process(db_url, "worker", "--name", "rescuer", *lease, log=tmp_path / "b.log")
    try:
        wait_for(lambda: count(sessions, Job, Job.state.in_(["done", "failed"])) == 1)
    finally:
        second.terminate()
        second.wait(30)
    with sessions() as session:
        job = session.get(Job, job_id)
        after = dict(session.execute(select(Prediction.id, Prediction.stimulus_sha256)).all())
    assert (job.state, job.worker, job.attempts) == ("done", "rescuer", 2)
    assert len(after) == 300 and len(set(after.values())) == 300
    assert all(after[row_id] == sha for row_id, sha in before.items())  # kept, not recomputed
    computed = int(job.result["reports"][0].split(": ")[1].split(" computed")[0])
    assert computed == 300 - len(before)


def test_an_import_killed_mid_transaction_leaves_nothing_and_can_be_redone(db_url, sessions, tmp_path):
    make_image_study(sessions, 200, name="shared")
    source = rating_file(tmp_path, "big.csv", [f"r{k}" for k in range(300)], 200)  # 60,000 rows
    importer = core_process(db_url, "import-ratings", "--study", "shared", str(source), *SCALES)
    wait_for(lambda: _rating_insert_running(db_url, sessions), every=0.01)
    importer.send_signal(signal.SIGKILL)
    importer.wait(30)
    # Committed chunks of the killed import stay invisible (its batch never became active).
    assert count(sessions, Rating, Rating.batch_id.in_(select(RatingBatch.id).where(visible_batches()))) == 0
    assert count(sessions, RatingBatch, visible_batches()) == 0
    with sessions.begin() as session:  # as if the 60 s after which a silent import is stale had passed
        session.execute(update(RatingBatch).values(import_heartbeat=utcnow() - STALE_IMPORT * 2))
    redo = core_process(db_url, "import-ratings", "--study", "shared", str(source), *SCALES)
    assert redo.wait(300) == 0
    assert count(sessions, Rating) == 60_000  # the half batch was removed
    assert count(sessions, RatingBatch) == 1


def _rating_insert_running(db_url: str, sessions) -> bool:
    """The importer is inside its write transaction: its rows are being written but not committed."""
    if db_url.startswith("sqlite"):
        wal = Path(db_url.split("///", 1)[1] + "-wal")
        return wal.exists() and wal.stat().st_size > 1_000_000
    with sessions() as session:
        return bool(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state <> 'idle' AND query ILIKE 'COPY \"rating\"%'")))
