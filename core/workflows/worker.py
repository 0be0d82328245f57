"""The worker loop: claim the oldest queued job, run it with heartbeats and progress, record how
it ended, repeat. Any number of workers on any hosts can share one database queue.

While a job runs, a heartbeat thread touches the job every ``heartbeat_s`` and reads whether a
cancel was asked. A worker that dies (kill -9, lost host) stops heartbeating; after ``lease_s``
the next claim re-queues its job, which resumes from the batches already committed (inference and
the face stage skip stored results). A worker that was only paused past its lease finds it no
longer owns the job at its next write and stops without touching it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core.workflows import jobs
from db import jobs as job_db
from db.ratings import remove_abandoned_imports

IN_PROCESS_ENV = "FACEAGREE_IN_PROCESS_WORKER"
RETRY_S = 5.0


def in_process_worker_enabled() -> bool:
    """Whether the web app runs its own worker thread (default yes; "0" on a web-only host)."""
    return os.environ.get(IN_PROCESS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class WorkerSettings:
    device: str | None = None  # None: the best device here (core.models.devices.resolve_device)
    lease_s: float = 60.0  # a running job without a heartbeat this long is re-queued
    heartbeat_s: float = 5.0
    poll_s: float = 0.5  # wait between claims when the queue is empty
    progress_every_s: float = 0.5  # progress is written at most this often (and at the end)
    max_attempts: int = 3
    sweep_s: float = 300.0  # when idle, remove abandoned rating imports at most this often


def worker_name() -> str:
    """host:pid:random, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _RunningJob:
    """The JobContext of one claimed job: throttled progress writes, heartbeats, stop flag."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, worker: str,
                 settings: WorkerSettings) -> None:
        self.factory, self.job_id, self.worker, self.settings = factory, job_id, worker, settings
        self.cancel_requested = False
        self.lost = False  # another worker owns the job now
        self._finished = threading.Event()
        self._last_write = 0.0
        self._started: dict[str, tuple[float, int]] = {}

    def progress_for(self, step: str) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            start, first = self._started.setdefault(step, (now, done))
            if done < total and done > first and now - self._last_write < self.settings.progress_every_s:
                return
            elapsed = now - start
            rate = (done - first) / elapsed if elapsed > 0 and done > first else None
            eta = (total - done) / rate if rate else None
            self._last_write = now
            with self.factory.begin() as session:
                owned = job_db.record_progress(session, self.job_id, self.worker, step=step,
                                               done=done, total=total, rate=rate, eta_seconds=eta)
            self.lost = self.lost or not owned

        return progress

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lost

    def beat(self) -> None:
        with self.factory.begin() as session:
            owned, cancel = job_db.heartbeat(session, self.job_id, self.worker)
        self.lost = self.lost or not owned
        self.cancel_requested = self.cancel_requested or cancel

    def heartbeat_loop(self) -> None:
        while not self._finished.wait(self.settings.heartbeat_s):
            try:
                self.beat()
            except Exception:  # a transient database error must not kill the heartbeat
                continue

    def stop_heartbeats(self) -> None:
        self._finished.set()


class Worker:
    """Claims and runs jobs from the database behind ``factory``."""

    def __init__(self, factory: sessionmaker[Session], settings: WorkerSettings = WorkerSettings(),
                 name: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.factory, self.settings = factory, settings
        self.name = name or worker_name()
        self.log = log or (lambda _message: None)

    def run_once(self) -> int | None:
        """Claim and run one job; returns its id, or None when the queue was empty."""
        job = job_db.claim(self.factory, self.name, lease=timedelta(seconds=self.settings.lease_s),
                           max_attempts=self.settings.max_attempts)
        if job is None:
            return None
        self.log(f"job {job.id}: {jobs.describe(job.kind, job.params)} (attempt {job.attempts})")
        state = self._run(job)
        self.log(f"job {job.id}: {state}")
        return job.id

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run jobs until ``stop`` is set, polling the queue when it is empty."""
        stop = stop or threading.Event()
        next_sweep = time.monotonic()
        while not stop.is_set():
            try:
                claimed = self.run_once()
            except DBAPIError as error:  # database restarting or unreachable: wait and retry
                self.log(f"database unavailable, retrying in {RETRY_S:.0f} s: {error}")
                stop.wait(RETRY_S)
                continue
            if claimed is None:
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self.settings.sweep_s
                stop.wait(self.settings.poll_s)

    def sweep(self) -> int:
        """Remove rating imports whose process died (db.ratings.remove_abandoned_imports), so
        their half-written rows do not wait for the next import; returns the batches removed."""
        try:
            removed = remove_abandoned_imports(self.factory)
        except DBAPIError as error:  # busy or unreachable: the next sweep tries again
            self.log(f"sweep of abandoned imports skipped: {error}")
            return 0
        if removed:
            self.log(f"removed {removed} abandoned rating import(s) (their process stopped mid-way)")
        return removed

    def _run(self, job: job_db.ClaimedJob) -> str:
        from core.models.devices import resolve_device

        running = _RunningJob(self.factory, job.id, self.name, self.settings)
        beats = threading.Thread(target=running.heartbeat_loop, daemon=True,
                                 name=f"heartbeat-{job.id}")
        beats.start()
        try:
            running.beat()  # a cancel asked between enqueue and claim stops the job at once
            if running.cancel_requested:
                outcome = jobs.Outcome("cancelled", {})
            else:
                outcome = jobs.run_job(self.factory, job, running, resolve_device(self.settings.device))
        finally:
            running.stop_heartbeats()
            beats.join()
        if running.lost:
            return "lost (re-queued and taken over by another worker)"
        if running.cancel_requested and outcome.state == "done":
            outcome.state = "cancelled"
        with self.factory.begin() as session:
            job_db.finish(session, job.id, self.name, outcome.state, result=outcome.result,
                          error=outcome.error)
        return outcome.state
