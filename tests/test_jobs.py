"""The job queue and the worker, on SQLite and PostgreSQL, with a real (tiny) ONNX card model."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.access import Role
from core.workflows import jobs
from core.workflows.worker import Worker, WorkerSettings
from db import jobs as job_db
from db.models import Job, Prediction, utcnow
from tests.job_helpers import make_image_study, register_tiny_model

pytestmark = pytest.mark.backends
LEASE = timedelta(seconds=30)
FAST = WorkerSettings(device="cpu", heartbeat_s=0.2, poll_s=0.05, progress_every_s=0.0)


def job_row(sessions, job_id: int) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def predictions(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Prediction))


def test_a_queued_model_run_is_run_by_a_worker_with_progress(data_dir, sessions):
    register_tiny_model(sessions)
    study_id = make_image_study(sessions, 6)
    job_id = jobs.enqueue(sessions, "model_run", study_id, {"models": ["tiny"], "batch_size": 2},
                          queued_by="ana", actor=Role.OPERATOR)
    assert job_row(sessions, job_id).state == "queued"
    assert Worker(sessions, FAST, name="w1").run_once() == job_id
    job = job_row(sessions, job_id)
    assert (job.state, job.worker, job.attempts, job.queued_by) == ("done", "w1", 1, "ana")
    assert (job.done, job.total, job.step) == (6, 6, "tiny [1/1]")
    assert job.result["reports"][0].startswith("tiny: 6 computed, 0 cached")
    assert job.heartbeat_at is not None and job.finished_at is not None
    assert predictions(sessions) == 6
    assert Worker(sessions, FAST).run_once() is None  # the queue is empty now


def test_claims_take_the_oldest_job_and_never_the_same_one_twice(data_dir, sessions):
    study_id = make_image_study(sessions, 1)
    first, second = (jobs.enqueue(sessions, "face_stage", study_id, {}, actor=Role.OPERATOR) for _ in range(2))
    claims = [job_db.claim(sessions, f"w{i}", lease=LEASE, max_attempts=3) for i in range(3)]
    assert [claim.id if claim else None for claim in claims] == [first, second, None]
    assert claims[0].params == {"detector": "mtcnn", "rule": "largest"}


def test_a_queued_job_cancelled_before_any_worker_sees_it_is_never_run(data_dir, sessions):
    study_id = make_image_study(sessions, 1)
    job_id = jobs.enqueue(sessions, "face_stage", study_id, {}, actor=Role.OPERATOR)
    with sessions.begin() as session:
        assert job_db.request_cancel(session, job_id, actor=Role.OPERATOR) == "cancelled"
        assert job_db.request_cancel(session, 999, actor=Role.OPERATOR) is None
    assert Worker(sessions, FAST).run_once() is None
    assert job_row(sessions, job_id).worker is None


def test_cancelling_a_running_job_stops_it_between_batches_and_keeps_what_it_computed(data_dir, sessions):
    register_tiny_model(sessions)
    study_id = make_image_study(sessions, 120, size=256)
    job_id = jobs.enqueue(sessions, "model_run", study_id, {"models": ["tiny"], "batch_size": 1}, actor=Role.OPERATOR)
    worker = threading.Thread(target=Worker(sessions, FAST).run_once)
    worker.start()
    deadline = time.monotonic() + 60
    while predictions(sessions) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    with sessions.begin() as session:
        assert job_db.request_cancel(session, job_id, actor=Role.OPERATOR) == "running"
    worker.join(60)
    job = job_row(sessions, job_id)
    assert job.state == "cancelled"
    assert 3 <= predictions(sessions) < 120
    assert "(cancelled)" in job.result["reports"][0]


def test_a_job_whose_worker_went_silent_is_requeued_and_the_old_worker_cannot_touch_it(data_dir, sessions):
    study_id = make_image_study(sessions, 1)
    job_id = jobs.enqueue(sessions, "face_stage", study_id, {}, actor=Role.OPERATOR)
    assert job_db.claim(sessions, "dead", lease=LEASE, max_attempts=3).id == job_id
    with sessions.begin() as session:  # its last heartbeat is older than the lease
        session.execute(update(Job).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    again = job_db.claim(sessions, "alive", lease=LEASE, max_attempts=3)
    assert (again.id, again.attempts) == (job_id, 2)
    with sessions.begin() as session:
        assert job_db.heartbeat(session, job_id, "dead") == (False, False)
        assert not job_db.record_progress(session, job_id, "dead", step="x", done=1, total=1,
                                          rate=None, eta_seconds=None)
        assert not job_db.finish(session, job_id, "dead", "done")
        assert job_db.finish(session, job_id, "alive", "done", result={"ok": 1})
    assert (job_row(sessions, job_id).state, job_row(sessions, job_id).worker) == ("done", "alive")


def test_a_job_that_keeps_losing_its_worker_fails_after_max_attempts(data_dir, sessions):
    study_id = make_image_study(sessions, 1)
    job_id = jobs.enqueue(sessions, "face_stage", study_id, {}, actor=Role.OPERATOR)
    for attempt in (1, 2):
        assert job_db.claim(sessions, f"w{attempt}", lease=LEASE, max_attempts=2).attempts == attempt
        with sessions.begin() as session:
            session.execute(update(Job).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    assert job_db.claim(sessions, "w3", lease=LEASE, max_attempts=2) is None
    job = job_row(sessions, job_id)
    assert job.state == "failed" and "stopped responding 2 times" in job.error


def test_a_failing_job_is_recorded_and_the_worker_goes_on(data_dir, sessions):
    study_id = make_image_study(sessions, 2)
    bad = jobs.enqueue(sessions, "model_run", study_id, {"models": ["no-such-model"]}, actor=Role.OPERATOR)
    good = jobs.enqueue(sessions, "face_stage", study_id, {"detector": "haar"}, actor=Role.OPERATOR)
    worker = Worker(sessions, FAST)
    assert (worker.run_once(), worker.run_once()) == (bad, good)
    assert job_row(sessions, bad).state == "failed" and "no-such-model" in job_row(sessions, bad).error
    done = job_row(sessions, good)
    assert done.state == "done" and done.result == {"faces": {"precropped": 2}, "images": 2}


def test_enqueue_refuses_unknown_kinds_and_empty_runs(data_dir, sessions):
    study_id = make_image_study(sessions, 1)
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.enqueue(sessions, "train", study_id, {}, actor=Role.OPERATOR)
    with pytest.raises(ValueError, match="at least one model"):
        jobs.enqueue(sessions, "model_run", study_id, {"models": []}, actor=Role.OPERATOR)


def test_cli_queues_a_run_lists_it_and_a_worker_runs_it(db_url, sessions, capsys):
    from core.__main__ import main

    register_tiny_model(sessions)
    make_image_study(sessions, 4, name="main")
    assert main(["--db", db_url, "run", "--study", "main", "--model", "tiny", "--queue"]) == 0
    assert "queued job 1" in capsys.readouterr().out
    assert predictions(sessions) == 0
    assert main(["--db", db_url, "jobs", "--study", "main"]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["--db", db_url, "worker", "--once", "--device", "cpu"]) == 0
    assert predictions(sessions) == 4
    assert main(["--db", db_url, "jobs", "--study", "main"]) == 0
    assert "done" in capsys.readouterr().out
    assert main(["--db", db_url, "cancel", "1"]) == 0
    assert "job 1: done" in capsys.readouterr().out


def test_a_report_export_job_writes_the_report_on_the_worker_host(data_dir, sessions, tmp_path):
    from core.workflows.demo import load_demo

    with sessions.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
    out = tmp_path / "paper"
    job_id = jobs.enqueue(sessions, "report_export", study_id,
                          {"out": str(out), "boot": 0, "figures": False}, actor=Role.OPERATOR)
    Worker(sessions, FAST).run_once()
    job = job_row(sessions, job_id)
    assert (job.state, job.result["out"], job.result["warnings"]) == ("done", str(out), [])
    assert job.result["files"] > 20
    assert (out / "tables" / "icc.csv").is_file() and (out / "manifest.json").is_file()


def test_an_fp16_check_on_a_cpu_worker_fails_with_the_reason(data_dir, sessions):
    register_tiny_model(sessions)
    study_id = make_image_study(sessions, 2)
    job_id = jobs.enqueue(sessions, "fp16_check", study_id, {"model": "tiny"}, actor=Role.OPERATOR)
    Worker(sessions, FAST).run_once()
    job = job_row(sessions, job_id)
    assert job.state == "failed" and "DeviceError" in job.error and "CUDA" in job.error
