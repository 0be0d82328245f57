"""The job queue: enqueue, claim, progress and heartbeats, finish, cancel, list.

Claiming is one UPDATE ... WHERE id = (oldest queued) RETURNING id, so two workers never get the
same job: on PostgreSQL the subquery locks its row with FOR UPDATE SKIP LOCKED (a concurrent
claimer skips to the next job instead of waiting); on SQLite the claim runs in a BEGIN IMMEDIATE
transaction, which takes the single write lock before reading. Every write a worker makes to a
running job is guarded by its worker id: a worker whose lease expired (its job re-queued and
claimed by another) learns it from a 0-row update and stops, never overwriting the new owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, require
from db.models import Job, utcnow

FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job it claimed."""

    id: int
    kind: str
    study_id: int
    params: dict[str, Any]
    attempts: int


def enqueue(session: Session, kind: str, study_id: int, params: dict[str, Any],
            queued_by: str = "", *, actor: Role) -> int:
    """Queue a job; returns its id."""
    require(actor, Action.RUN_MODELS)
    job = Job(kind=kind, study_id=study_id, params=params, queued_by=queued_by, state="queued",
              cancel_requested=False, attempts=0, step="", done=0, total=0, queued_at=utcnow())
    session.add(job)
    session.flush()
    return job.id


def requeue_stale(session: Session, lease: timedelta, max_attempts: int) -> int:
    """Put back running jobs whose worker stopped sending heartbeats for ``lease``; a job that
    already used ``max_attempts`` claims fails, one whose cancel was asked is cancelled."""
    now = utcnow()
    stale = (Job.state == "running") & (Job.heartbeat_at < now - lease)
    cancelled = session.execute(
        update(Job).where(stale, Job.cancel_requested.is_(True))
        .values(state="cancelled", finished_at=now, worker=None)
    ).rowcount
    failed = session.execute(
        update(Job).where(stale, Job.attempts >= max_attempts)
        .values(state="failed", finished_at=now, worker=None,
                error=f"its worker stopped responding {max_attempts} times; see the worker logs")
    ).rowcount
    requeued = session.execute(
        update(Job).where(stale).values(state="queued", worker=None)
    ).rowcount
    return cancelled + failed + requeued


def claim(factory: sessionmaker[Session], worker: str, *, lease: timedelta,
          max_attempts: int) -> ClaimedJob | None:
    """Re-queue stale jobs, then atomically take the oldest queued job for ``worker``."""
    with factory() as session:
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        requeue_stale(session, lease, max_attempts)
        oldest = (
            select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery()
        )
        now = utcnow()
        claimed = session.execute(
            update(Job).where(Job.id == oldest)
            .values(state="running", worker=worker, attempts=Job.attempts + 1,
                    started_at=now, heartbeat_at=now, error=None)
            .returning(Job.id, Job.kind, Job.study_id, Job.params, Job.attempts)
        ).first()
        session.commit()
    return ClaimedJob(*claimed) if claimed else None


def _owned(job_id: int, worker: str):
    return (Job.id == job_id) & (Job.worker == worker) & (Job.state == "running")


def heartbeat(session: Session, job_id: int, worker: str) -> tuple[bool, bool]:
    """Record that ``worker`` is alive; returns (still owns the job, cancel requested)."""
    row = session.execute(
        update(Job).where(_owned(job_id, worker)).values(heartbeat_at=utcnow())
        .returning(Job.cancel_requested)
    ).first()
    return (row is not None, bool(row and row[0]))


def record_progress(session: Session, job_id: int, worker: str, *, step: str, done: int,
                    total: int, rate: float | None, eta_seconds: float | None) -> bool:
    """Store progress (also a heartbeat); False when ``worker`` no longer owns the job."""
    now = utcnow()
    return session.execute(
        update(Job).where(_owned(job_id, worker))
        .values(step=step, done=done, total=total, rate=rate, eta_seconds=eta_seconds,
                progress_at=now, heartbeat_at=now)
    ).rowcount == 1


def finish(session: Session, job_id: int, worker: str, state: str, *,
           result: dict[str, Any] | None = None, error: str | None = None) -> bool:
    """Close a running job as done, failed or cancelled; False when ``worker`` lost it."""
    if state not in FINISHED:
        raise ValueError(f"a job finishes as one of {FINISHED}, not {state!r}")
    return session.execute(
        update(Job).where(_owned(job_id, worker))
        .values(state=state, result=result, error=error, finished_at=utcnow(), eta_seconds=None)
    ).rowcount == 1


def request_cancel(session: Session, job_id: int, *, actor: Role) -> str | None:
    """Cancel a queued job at once, or ask a running one to stop between batches.

    Returns the job's state afterwards (None for an unknown id)."""
    require(actor, Action.RUN_MODELS)
    now = utcnow()
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == "queued")
        .values(state="cancelled", cancel_requested=True, finished_at=now)
    )
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == "running").values(cancel_requested=True)
    )
    return session.scalar(select(Job.state).where(Job.id == job_id))


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


JOB_COLUMNS = ["id", "kind", "state", "step", "done", "total", "rate", "eta_seconds",
               "queued_by", "worker", "cancel_requested", "attempts", "queued_at", "started_at",
               "heartbeat_at", "finished_at", "params", "result", "error"]


def study_jobs(session: Session, study_id: int, limit: int = 50) -> pd.DataFrame:
    """The study's newest jobs first, one row per job with its progress (JOB_COLUMNS)."""
    jobs = session.scalars(
        select(Job).where(Job.study_id == study_id).order_by(Job.id.desc()).limit(limit)
    ).all()
    rows = [{column: getattr(job, column) for column in JOB_COLUMNS} for job in jobs]
    table = pd.DataFrame(rows, columns=JOB_COLUMNS)
    for column in ("queued_at", "started_at", "heartbeat_at", "finished_at"):
        table[column] = [as_utc(value) for value in table[column]]
    return table
