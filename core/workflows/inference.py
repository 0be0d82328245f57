"""Batched, cached inference: one model (or several in turn) over a study's images.

Flow per model: resolve the spec and its weights fingerprint, make sure every image has its
face (the shared face stage), skip images whose prediction is already stored under the full
cache key (one bulk query), then prepare crops in parallel one batch ahead of the network
(threads, or worker processes feeding an accelerator: core.workflows.preparation), run each
batch, decode it and commit its rows. A run interrupted at any point resumes where it stopped;
a stimulus that cannot be processed (undecodable, no face, no landmarks for an aligned crop) is
stored as a failure with its reason and never stops the run.

Cache key: (stimulus sha256, model id, weights fingerprint, preprocessing version [+fp16],
detector key). The detector key comes from the face stage (FaceResult.detector): the detector
version, plus the chosen face's index when an image holds several faces, so a changed choice
rule never serves a prediction made on another face.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, require
from core.faces.crops import Face
from core.models import checkpoints, registry
from core.models.adapters.base import Adapter, ModelOutput
from core.models.devices import (
    PrecisionCheck,
    check_half,
    compare_outputs,
    free_memory,
    precision_tag,
    resolve_device,
)
from core.faces.detection import unavailable_reason
from core.models.face_profiles import crop_note, detector_for, get_profile
from core.models.spec import ModelSpec
from core.models.variants import declare_aligned_crops
from core.workflows import catalog
from core.workflows import face_stage
from core.workflows.preparation import (
    Item,
    Mode,
    PreparedBatch,
    choose_mode,
    describe,
    prepare_one,
    process_batches,
    thread_batches,
)
from db.predictions import (
    CacheKey,
    PredictionRow,
    StudyImage,
    cached_statuses,
    delete_failed,
    save_predictions,
    study_images,
)

Progress = Callable[[int, int], None]
StopFlag = Callable[[], bool]
# (spec, device, half) -> a loaded adapter; the UI passes a cached one, the CLI the registry's.
AdapterSource = Callable[[ModelSpec, str, bool], Adapter]

class RunError(RuntimeError):
    """A model-level failure (the network itself fails on a batch); results so far are kept."""


@dataclass
class RunReport:
    """What one run did. ``skipped``: images left for a later run because it was cancelled."""

    model_id: str
    computed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    device: str = ""
    half: bool = False
    cancelled: bool = False
    error: str | None = None

    @property
    def images(self) -> int:
        return self.computed + self.cached + self.failed + self.skipped

    def summary(self) -> str:
        if self.error:
            return f"{self.model_id}: not run: {self.error}"
        text = (
            f"{self.model_id}: {self.computed} computed, {self.cached} cached, "
            f"{self.failed} failed, {self.skipped} left, {self.seconds:.1f} s"
        )
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass(frozen=True)
class Job:
    """One image to compute, with the face the shared face stage chose for it."""

    sha256: str
    detector: str
    face: Face | None
    face_error: str | None = None
    crop_note: str | None = None  # stored in the prediction's extras["crop"] (face_profiles.crop_note)


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left at the rate so far; None before the first unit of work is done."""
    if done <= 0 or total <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


def run_model(
    factory: sessionmaker[Session],
    study_id: int,
    model_id: str,
    *,
    device: str | None = None,
    half: bool = False,
    batch_size: int = 32,
    detector: str = "mtcnn",
    rule: str = "largest",
    progress: Progress | None = None,
    should_stop: StopFlag | None = None,
    face_progress: Progress | None = None,
    retry_failed: bool = False,
    adapter_source: AdapterSource | None = None,
    aligned_crops: bool = False,
    preparation: Mode = "auto",
    actor: Role,
) -> RunReport:
    """Run ``model_id`` over the study's images; stored predictions are reused, not recomputed.

    ``progress(done, total)`` counts images computed in this run (cached ones excluded);
    ``should_stop()`` is polled between batches. ``adapter_source`` lets the caller supply a
    cached loaded model (then it is not released here); by default the registry loads one and
    it is released at the end. ``aligned_crops`` declares the pre-cropped stimuli to be aligned
    faces for the models that align faces (variants.declare_aligned_crops; others ignore it).
    ``preparation`` chooses threads or worker processes for the image preparation
    (preparation.choose_mode; ``auto`` uses processes on an accelerator).
    Raises CheckpointError when the weights are not available.
    """
    require(actor, Action.RUN_MODELS)
    with factory() as session:
        spec = catalog.get_spec(model_id, session)
    return run_spec(
        factory, study_id, spec, checkpoints.weights_fingerprint(spec),
        device=device, half=half, batch_size=batch_size, detector=detector, rule=rule,
        progress=progress, should_stop=should_stop, face_progress=face_progress,
        retry_failed=retry_failed, adapter_source=adapter_source, aligned_crops=aligned_crops,
        preparation=preparation, actor=actor,
    )


def run_spec(
    factory: sessionmaker[Session],
    study_id: int,
    spec: ModelSpec,
    weights: str,
    *,
    device: str | None = None,
    half: bool = False,
    batch_size: int = 32,
    detector: str = "mtcnn",
    rule: str = "largest",
    progress: Progress | None = None,
    should_stop: StopFlag | None = None,
    face_progress: Progress | None = None,
    retry_failed: bool = False,
    adapter_source: AdapterSource | None = None,
    aligned_crops: bool = False,
    preparation: Mode = "auto",
    actor: Role,
) -> RunReport:
    """:func:`run_model` for an already resolved spec and weights fingerprint."""
    require(actor, Action.RUN_MODELS)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if aligned_crops:
        spec = declare_aligned_crops(spec)
    started = time.perf_counter()
    device = resolve_device(device)
    check_half(device, half)
    key = CacheKey(spec.id, weights, spec.preprocessing.version + precision_tag(half))
    report = RunReport(spec.id, device=device, half=half)
    with factory() as session:
        images = study_images(session, study_id)
    jobs = _face_jobs(factory, images, detector, rule, device, face_progress, spec.preprocessing.face_profile, actor=actor)
    todo = _uncached(factory, key, jobs, retry_failed, actor=actor)
    report.cached = len(jobs) - len(todo)
    if todo:
        owned = adapter_source is None
        adapter = (adapter_source or registry.load_adapter)(spec, device, half)
        try:
            batches = _batches(todo, batch_size, adapter, choose_mode(preparation, device), device)
            _compute(factory, key, adapter, todo, batches, progress, should_stop, report, actor=actor)
        finally:
            if owned:
                release_adapter(adapter)
    report.seconds = time.perf_counter() - started
    return report


def run_models(
    factory: sessionmaker[Session],
    study_id: int,
    model_ids: Sequence[str],
    *,
    on_model: Callable[[str, int, int], None] | None = None,
    progress_for: Callable[[str], Progress] | None = None,
    should_stop: StopFlag | None = None,
    actor: Role,
    **options,
) -> list[RunReport]:
    """Run several models in turn. A model that cannot run (missing weights, failing network)
    gets a report with ``error`` set and the others still run; cancelling stops the sequence.

    ``on_model(model_id, index, count)`` is called before each model and ``progress_for(model_id)``
    gives that model's progress callback; ``options`` are those of :func:`run_model`.
    """
    require(actor, Action.RUN_MODELS)
    reports = []
    for index, model_id in enumerate(model_ids):
        if should_stop and should_stop():
            break
        if on_model:
            on_model(model_id, index, len(model_ids))
        progress = progress_for(model_id) if progress_for else None
        try:
            report = run_model(factory, study_id, model_id, should_stop=should_stop,
                               progress=progress, **options, actor=actor)
        except (checkpoints.CheckpointError, RunError, LookupError) as error:
            report = RunReport(model_id, error=str(error))
        reports.append(report)
        if report.cancelled:
            break
    return reports


def model_overview(session: Session) -> pd.DataFrame:
    """catalog.describe_models plus, per model, its checkpoint ``state`` (ready, missing,
    mismatch, unverified; "imported" for imported predictions), ``message`` and ``where_to_get``."""
    table = catalog.describe_models(session)
    statuses = {spec.id: checkpoints.checkpoint_status(spec) for spec in catalog.all_specs(session)}
    table["state"] = [statuses[m].state if m in statuses else "imported" for m in table["model_id"]]
    table["message"] = [statuses[m].message if m in statuses else "" for m in table["model_id"]]
    table["where_to_get"] = [statuses[m].where_to_get if m in statuses else "" for m in table["model_id"]]
    return table


def release_adapter(adapter: Adapter) -> None:
    """Free a loaded model and give its accelerator memory back (st.cache_resource on_release)."""
    adapter.release()
    free_memory()


def check_half_precision(
    factory: sessionmaker[Session],
    study_id: int,
    model_id: str,
    *,
    device: str | None = None,
    n: int = 16,
    detector: str = "mtcnn",
    rule: str = "largest", actor: Role,
) -> PrecisionCheck:
    """Compare fp16 with fp32 outputs of ``model_id`` on up to ``n`` of the study's images.

    Needs CUDA (raises DeviceError elsewhere) and at least one image with a face.
    """
    require(actor, Action.RUN_MODELS)
    device = resolve_device(device)
    check_half(device, True)
    with factory() as session:
        spec = catalog.get_spec(model_id, session)
        images = study_images(session, study_id)
    profile = spec.preprocessing.face_profile
    jobs = [job for job in _face_jobs(factory, images, detector, rule, device, None, profile, actor=actor) if job.face][:n]
    reference = registry.load_adapter(spec, device, False)
    try:
        arrays = [array for array, _ in (prepare_one(reference, _item(job)) for job in jobs)
                  if array is not None]
        if not arrays:
            raise RunError("no image of this study could be prepared for the fp16 check")
        batch = np.stack(arrays)
        fp32 = reference.decode(reference.forward(batch))
    finally:
        release_adapter(reference)
    halved = registry.load_adapter(spec, device, True)
    try:
        fp16 = halved.decode(halved.forward(batch))
    finally:
        release_adapter(halved)
    return compare_outputs(fp32, fp16)


def _face_jobs(
    factory: sessionmaker[Session], images: list[StudyImage], detector: str, rule: str,
    device: str, progress: Progress | None, profile_name: str = "shared", *, actor: Role,
) -> list[Job]:
    profile = get_profile(profile_name)
    unavailable = unavailable_reason(profile.prefer_detector) if profile.prefer_detector else None
    results = face_stage.ensure_faces(
        factory, [image.sha256 for image in images],
        detector=detector_for(profile, detector, unavailable), rule=rule,
        precropped=frozenset(image.sha256 for image in images if image.precropped),
        progress=progress, device=device,
        actor=actor,
    )
    results = {sha: face_stage.restrict(result, profile.keeps) for sha, result in results.items()}
    return [
        Job(image.sha256, result.detector, result.face, None if result.face else _no_face_message(result),
            crop_note(profile, result.version, unavailable))
        for image, result in ((image, results[image.sha256]) for image in images)
    ]


def _no_face_message(result: face_stage.FaceResult) -> str:
    if result.error:
        return f"face stage failed ({result.version}): {result.error}"
    if result.faces:
        return (f"{len(result.faces)} faces found and the choice rule {result.rule!r} or the model's "
                "face profile (minimum size, score) uses none; choose another rule or crop the stimulus")
    return (f"no face found by {result.version}; mark the stimulus as pre-cropped "
            "or try another detector")


def _uncached(factory: sessionmaker[Session], key: CacheKey, jobs: list[Job], retry_failed: bool, *, actor: Role) -> list[Job]:
    wanted = {job.sha256: job.detector for job in jobs}
    with factory.begin() as session:
        statuses = cached_statuses(session, key, wanted)
        if retry_failed:
            failed = [sha for sha, status in statuses.items() if status == "error"]
            delete_failed(session, key, failed, actor=actor)
            statuses = {sha: s for sha, s in statuses.items() if s != "error"}
    return [job for job in jobs if job.sha256 not in statuses]


def _item(job: Job) -> Item:
    return Item(job.sha256, job.face, job.face_error)


def _batches(jobs: list[Job], batch_size: int, adapter: Adapter, mode: str, device: str) -> Iterator[PreparedBatch]:
    items = [_item(job) for job in jobs]
    if mode == "processes":
        return process_batches(items, batch_size, adapter.spec, device)
    return thread_batches(items, batch_size, adapter)


def _compute(
    factory: sessionmaker[Session], key: CacheKey, adapter: Adapter, jobs: list[Job],
    prepared: Iterator[PreparedBatch], progress: Progress | None, should_stop: StopFlag | None,
    report: RunReport, *, actor: Role,
) -> None:
    done, total = 0, len(jobs)
    if progress:
        progress(0, total)
    with closing(prepared) as batches:
        for batch in batches:
            rows = _run_batch(adapter, jobs[done:done + len(batch)], batch)
            with factory.begin() as session:
                save_predictions(session, key, rows, actor=actor)
            report.computed += sum(row.status == "ok" for row in rows)
            report.failed += sum(row.status == "error" for row in rows)
            done += len(batch)
            if progress:
                progress(done, total)
            if should_stop and should_stop() and done < total:
                report.cancelled = True
                break
    report.skipped = total - done


def _run_batch(adapter: Adapter, jobs: list[Job], batch: PreparedBatch) -> list[PredictionRow]:
    ready = [job for job, error in zip(jobs, batch.errors) if error is None]
    outputs: list[ModelOutput] = []
    if batch.arrays is not None:
        try:
            outputs = adapter.decode(adapter.forward(batch.arrays))
        except Exception as error:
            raise RunError(f"{adapter.spec.id} failed on a batch of {len(ready)}: {describe(error)}") from error
        if len(outputs) != len(ready):
            raise RunError(f"{adapter.spec.id} decoded {len(outputs)} outputs for {len(ready)} images")
    decoded = iter(outputs)
    return [
        _row(job, next(decoded) if error is None else None, error)
        for job, error in zip(jobs, batch.errors)
    ]


def _row(job: Job, output: ModelOutput | None, error: str | None) -> PredictionRow:
    noted = {"crop": job.crop_note} if job.crop_note else {}
    if output is None:
        return PredictionRow(job.sha256, job.detector, status="error", error=error or "not computed",
                             extras=noted or None)
    if not _finite(output):
        return PredictionRow(job.sha256, job.detector, status="error", extras=noted or None,
                             error="the model returned a non-finite value (NaN or infinity)")
    return PredictionRow(
        job.sha256, job.detector, label=output.label, probs=output.probs,
        valence=output.valence, arousal=output.arousal, extras={**(output.extras or {}), **noted} or None,
    )


def _finite(output: ModelOutput) -> bool:
    values = [output.valence, output.arousal, *(output.probs or {}).values()]
    return all(math.isfinite(value) for value in values if value is not None)
