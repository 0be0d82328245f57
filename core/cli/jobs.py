"""Job commands: ``worker`` runs queued jobs (on a GPU host), ``jobs`` lists a study's jobs,
``cancel`` stops one. ``run --queue`` (core.cli.models) queues a model run instead of running it.
"""

from __future__ import annotations

import argparse
import sys

from core.access import Role
from core.cli import summary
from core.models.devices import DEVICE_CHOICES
from core.workflows import jobs
from core.workflows.worker import Worker, WorkerSettings
from db import jobs as job_db
from db.engine import make_engine, make_sessionmaker


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser(
        "worker", help=summary("worker"))
    worker.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    worker.add_argument("--once", action="store_true", help="run at most one job, then exit")
    worker.add_argument("--name", help="worker id shown in the jobs table (default host:pid:random)")
    worker.add_argument("--lease", type=float, default=WorkerSettings.lease_s, metavar="S",
                        help="seconds without a heartbeat before a running job is re-queued")
    worker.add_argument("--heartbeat", type=float, default=WorkerSettings.heartbeat_s, metavar="S")
    worker.add_argument("--poll", type=float, default=WorkerSettings.poll_s, metavar="S",
                        help="seconds between looks at an empty queue")
    worker.set_defaults(handler=run_worker)

    listing = subparsers.add_parser("jobs", help=summary("jobs"))
    listing.add_argument("--study", required=True, help="study name")
    listing.set_defaults(handler=run_jobs)

    cancel = subparsers.add_parser("cancel", help=summary("cancel"))
    cancel.add_argument("job", type=int, help="job id (see `jobs`)")
    cancel.set_defaults(handler=run_cancel)


def _factory(args: argparse.Namespace):
    return make_sessionmaker(make_engine(args.db))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_worker(args: argparse.Namespace) -> int:
    device = None if args.device == "auto" else args.device
    settings = WorkerSettings(device=device, lease_s=args.lease, heartbeat_s=args.heartbeat,
                              poll_s=args.poll)
    worker = Worker(_factory(args), settings, name=args.name, log=_log)
    _log(f"worker {worker.name} waiting for jobs")
    if args.once:
        worker.run_once()
        return 0
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        _log("stopped; a job it was running is re-queued after the lease")
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    from core.cli.models import _study_id

    factory = _factory(args)
    study_id = _study_id(factory, args.study)
    if study_id is None:
        return 2
    with factory() as session:
        table = job_db.study_jobs(session, study_id)
    for job in table.itertuples():
        progress = f"{job.done}/{job.total}" if job.total else ""
        print(f"{job.id:>5}  {job.state:<9}  {jobs.describe(job.kind, job.params):<40}  "
              f"{job.step} {progress}  {job.error or ''}".rstrip())
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with _factory(args).begin() as session:
        state = job_db.request_cancel(session, args.job, actor=Role.OPERATOR)
    if state is None:
        print(f"error: no job {args.job}", file=sys.stderr)
        return 2
    print(f"job {args.job}: {state}" + (" (stops after the current batch)" if state == "running" else ""))
    return 0
