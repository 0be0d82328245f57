"""Job kinds: what a queued job does, and how pages and the CLI queue one.

A job is a kind plus JSON parameters (db.models.Job). ``run_job`` runs one on the worker's
device with the existing cached, resumable code (core.workflows.face_stage.ensure_faces,
core.workflows.inference.run_models / check_half_precision, the report command), reporting progress
through a :class:`JobContext` and stopping between batches when it says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from db import jobs as job_db
from db.models import Study

KINDS = ("face_stage", "model_run", "fp16_check", "report_export")
FACE_DEFAULTS = {"detector": "mtcnn", "rule": "largest"}
RUN_DEFAULTS = {**FACE_DEFAULTS, "half": False, "batch_size": 32, "retry_failed": False}


class JobContext(Protocol):
    """What a running job reports to and asks of its worker."""

    def progress_for(self, step: str) -> Callable[[int, int], None]: ...

    def should_stop(self) -> bool: ...


@dataclass
class Outcome:
    """How a job ended: ``state`` is done, failed or cancelled."""

    state: str
    result: dict[str, Any]
    error: str | None = None

# The worker runs on the server: it acts for whoever queued the job, whose role was checked
# when it was queued.
WORKER_ROLE = Role.OPERATOR


def enqueue(factory: sessionmaker[Session], kind: str, study_id: int, params: dict[str, Any],
            queued_by: str = "", *, actor: Role) -> int:
    """Queue a job of ``kind`` (one of KINDS) with its parameters; returns the job id."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
    defaults = RUN_DEFAULTS if kind == "model_run" else FACE_DEFAULTS
    if kind == "model_run" and not params.get("models"):
        raise ValueError("a model run needs at least one model id")
    with factory.begin() as session:
        return job_db.enqueue(session, kind, study_id, {**defaults, **params}, queued_by, actor=actor)


def run_job(factory: sessionmaker[Session], job: job_db.ClaimedJob, context: JobContext,
            device: str) -> Outcome:
    """Run a claimed job on ``device``; failures of the work itself become a failed Outcome."""
    runner = RUNNERS[job.kind]
    try:
        return runner(factory, job.study_id, job.params, context, device)
    except Exception as error:  # the worker must outlive any one job; the message is stored
        return Outcome("failed", {}, f"{type(error).__name__}: {error}")


def _face_stage(factory, study_id: int, params: dict[str, Any], context: JobContext,
                device: str) -> Outcome:
    from core.workflows import face_stage
    from db.predictions import study_images

    with factory() as session:
        images = study_images(session, study_id)
    results = face_stage.ensure_faces(
        factory, [image.sha256 for image in images], detector=params["detector"],
        rule=params["rule"], precropped={image.sha256 for image in images if image.precropped},
        progress=context.progress_for("faces"), device=device, actor=WORKER_ROLE,
    )
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    return Outcome("done", {"faces": counts, "images": len(images)})


def _model_run(factory, study_id: int, params: dict[str, Any], context: JobContext,
               device: str) -> Outcome:
    from core.workflows import inference

    models = list(params["models"])
    step = {"name": ""}

    def on_model(model_id: str, index: int, count: int) -> None:
        step["name"] = f"{model_id} [{index + 1}/{count}]"

    reports = inference.run_models(
        factory, study_id, models, device=device, half=params["half"],
        batch_size=int(params["batch_size"]), detector=params["detector"], rule=params["rule"],
        retry_failed=params["retry_failed"], aligned_crops=params.get("aligned_crops", False),
        on_model=on_model,
        progress_for=lambda _model: context.progress_for(step["name"]),
        face_progress=context.progress_for("faces"), should_stop=context.should_stop,
        actor=WORKER_ROLE,
    )
    result = {"reports": [report.summary() for report in reports]}
    errors = [report.summary() for report in reports if report.error]
    if errors:
        return Outcome("failed", result, "; ".join(errors))
    stopped = len(reports) < len(models) or any(report.cancelled for report in reports)
    return Outcome("cancelled" if stopped else "done", result)


def _fp16_check(factory, study_id: int, params: dict[str, Any], context: JobContext,
                device: str) -> Outcome:
    from core.workflows import inference

    check = inference.check_half_precision(
        factory, study_id, params["model"], device=device, n=int(params.get("n", 16)),
        detector=params["detector"], rule=params["rule"], actor=WORKER_ROLE,
    )
    return Outcome("done", {"summary": f"{params['model']} fp16 vs fp32: {check.summary()}"})


def _report_export(factory, study_id: int, params: dict[str, Any], context: JobContext,
                   device: str) -> Outcome:
    """The ``report`` command's output written into ``params['out']`` on the worker's host."""
    from core.workflows.report import ReportOptions, write_study_report

    with factory() as session:
        name = session.scalar(select(Study.name).where(Study.id == study_id))
    options = ReportOptions(
        study=name, out=Path(params["out"]), boot=int(params.get("boot", 1000)),
        seed=int(params.get("seed", 0)), models=params.get("models"), batches=params.get("batches"),
        ties=params.get("ties", "none"), unequal=params.get("unequal", "modal"),
        subgroups=params.get("subgroups"), consensus_of=params.get("consensus_of"),
        figures=params.get("figures", True), html=params.get("html", False),
    )
    written = write_study_report(factory, options)
    return Outcome("done", {"out": str(options.out), "files": len(written), "warnings": options.warnings})


RUNNERS: dict[str, Callable[..., Outcome]] = {
    "face_stage": _face_stage,
    "model_run": _model_run,
    "fp16_check": _fp16_check,
    "report_export": _report_export,
}


def describe(kind: str, params: dict[str, Any]) -> str:
    """One line naming what a job does, for tables and logs."""
    if kind == "model_run":
        return f"run {', '.join(params.get('models', []))}" + (" (fp16)" if params.get("half") else "")
    if kind == "face_stage":
        return f"face stage ({params.get('detector')})"
    if kind == "fp16_check":
        return f"fp16 check of {params.get('model')}"
    return f"report to {params.get('out')}"
