"""Typed ORM models. Schema changes go through Alembic migrations (db/migrations/versions).

Inference results and face detections are keyed by the stimulus *content* hash, so two studies
sharing an image share the cached work, and a renamed file keeps its predictions.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# RatingBatch.import_state values. ABANDONED: a failed or dead import whose rows are being removed.
IMPORTING = "importing"
ACTIVE = "active"
ABANDONED = "abandoned"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Study(Base):
    """A set of stimuli and ratings analysed together (e.g. a pilot and the main study)."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    # How rating files name stimuli: "name" (file name), "stem" (no extension) or "path".
    stimulus_key: Mapped[str] = mapped_column(String(10), default="name")
    key_case_insensitive: Mapped[bool] = mapped_column(Boolean, default=True)
    # Reviewers see blurred thumbnails unless the owner allows the originals (stimuli may show
    # study participants).
    reviewers_see_faces: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    stimuli: Mapped[list[Stimulus]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )
    batches: Mapped[list[RatingBatch]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )


class Stimulus(Base):
    """One face image of a study; the bytes live in content-addressed storage by ``sha256``."""

    __tablename__ = "stimulus"
    __table_args__ = (UniqueConstraint("study_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    # Relative path inside the upload (folders of a ZIP kept), POSIX separators.
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(50))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary)
    # Canonical label of the emotion a posed stimulus intends to show (None if not posed).
    intended_emotion: Mapped[str | None] = mapped_column(String(20))
    # Stimulus is already a face crop: skip detection and use the whole image.
    precropped: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    study: Mapped[Study] = relationship(back_populates="stimuli")
    attributes: Mapped[list[StimulusAttribute]] = relationship(
        back_populates="stimulus", cascade="all, delete-orphan", passive_deletes=True
    )


class StimulusAttribute(Base):
    """Free metadata of a stimulus (poser gender, age group, stimulus set, ...)."""

    __tablename__ = "stimulus_attribute"
    __table_args__ = (UniqueConstraint("stimulus_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stimulus_id: Mapped[int] = mapped_column(
        ForeignKey("stimulus.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(Text)

    stimulus: Mapped[Stimulus] = relationship(back_populates="attributes")


class RatingBatch(Base):
    """One uploaded rating file with the provenance needed to reproduce its import."""

    __tablename__ = "rating_batch"
    # The duplicate-file guard, enforced by the database so concurrent imports cannot race it:
    # one live (not deleted) guarded batch per file and study. Deliberate duplicates carry no key.
    __table_args__ = (
        Index(
            "ux_rating_batch_live_file", "study_id", "dedupe_sha256", unique=True,
            sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # The file's sha256 while this batch guards against importing the file again; NULL for a
    # batch imported deliberately as a duplicate ("allow duplicates").
    dedupe_sha256: Mapped[str | None] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(200), default="")
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # "long", "wide_rater", "wide_stimulus" or "votes".
    layout: Mapped[str] = mapped_column(String(20))
    # Column mapping, scales and label code map exactly as used for this import; the mapping's
    # "repeats" key is the batch's repeat policy (core.ratings.repeats).
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scales: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    label_map: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_rows: Mapped[int] = mapped_column(Integer, default=0)
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    # Soft delete: set on delete, purged after the undo window.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
    # IMPORTING while its ratings go in chunk by chunk (each chunk its own short transaction), then
    # ACTIVE (or ABANDONED). Readers see only active batches (visible_batches()), so a half import
    # never shows.
    import_state: Mapped[str] = mapped_column(
        String(20), default=ACTIVE, server_default=text(f"'{ACTIVE}'")
    )
    # Refreshed by every chunk of an import: an importing batch untouched for a while was
    # abandoned (its process died) and the next import removes it.
    import_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship(back_populates="batches")
    ratings: Mapped[list[Rating]] = relationship(
        back_populates="batch", cascade="all, delete-orphan", passive_deletes=True
    )


class Rating(Base):
    """One rater's judgement of one stimulus: raw values as uploaded plus normalised ones."""

    __tablename__ = "rating"
    # A rater may rate a stimulus twice in one batch (test-retest): ``occurrence`` numbers them.
    __table_args__ = (UniqueConstraint("batch_id", "stimulus_id", "rater", "occurrence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("rating_batch.id", ondelete="CASCADE"), index=True
    )
    stimulus_id: Mapped[int] = mapped_column(
        ForeignKey("stimulus.id", ondelete="CASCADE"), index=True
    )
    rater: Mapped[str] = mapped_column(String(200))
    occurrence: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    emotion: Mapped[str | None] = mapped_column(String(20))
    emotion_raw: Mapped[str | None] = mapped_column(String(200))
    valence: Mapped[float | None] = mapped_column(Float)
    arousal: Mapped[float | None] = mapped_column(Float)
    valence_raw: Mapped[float | None] = mapped_column(Float)
    arousal_raw: Mapped[float | None] = mapped_column(Float)

    batch: Mapped[RatingBatch] = relationship(back_populates="ratings")


class RegisteredModel(Base):
    """A model added at run time: a model card + ONNX/TorchScript file, or imported predictions.

    Built-in models live in code (core.models.registry) and need no row here.
    """

    __tablename__ = "registered_model"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # "card" (file + model card) or "imported" (precomputed predictions).
    source: Mapped[str] = mapped_column(String(20))
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checkpoint_path: Mapped[str | None] = mapped_column(String(1000))
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FaceDetection(Base):
    """Faces found on one image by one detector; shared by every model and study."""

    __tablename__ = "face_detection"
    __table_args__ = (UniqueConstraint("stimulus_sha256", "detector"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stimulus_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Detector name and version, e.g. "mtcnn-v1", "haar-v1", "precropped".
    detector: Mapped[str] = mapped_column(String(50))
    # List of {"box": [x1,y1,x2,y2], "score": p, "landmarks": [[x,y]*5] | None}.
    faces: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    chosen: Mapped[int | None] = mapped_column(Integer)
    choice_rule: Mapped[str] = mapped_column(String(50), default="largest")
    # "one", "several", "none", "precropped" or "error".
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Prediction(Base):
    """One model's output on one image; the cache key is the unique constraint."""

    __tablename__ = "prediction"
    __table_args__ = (
        UniqueConstraint(
            "stimulus_sha256", "model_id", "checkpoint_sha256", "preprocessing", "detector",
            "study_id",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stimulus_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Set for predictions that belong to one study (a tool's imported outputs, the synthetic
    # demo); NULL for computed ones, which every study holding the same image bytes shares.
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("study.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    # Preprocessing version of the model spec: a change invalidates the cache.
    preprocessing: Mapped[str] = mapped_column(String(50))
    detector: Mapped[str] = mapped_column(String(50))
    # "ok" or "error" (the stimulus is skipped, never fatal to a run).
    status: Mapped[str] = mapped_column(String(10), default="ok")
    error: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(20))
    # Canonical label -> probability (only labels the model can output).
    probs: Mapped[dict[str, float] | None] = mapped_column(JSON)
    valence: Mapped[float | None] = mapped_column(Float)
    arousal: Mapped[float | None] = mapped_column(Float)
    # Action units (Multitask-CNN): {"AU1": p, ...}.
    extras: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def visible_batches() -> ColumnElement[bool]:
    """Batches whose import finished. Every read of batches or ratings filters on this: a batch
    still importing, or abandoned half-way by a crashed process, holds ratings no one may see."""
    return RatingBatch.import_state == ACTIVE


def analysed_batches(study_id: int) -> ColumnElement[bool]:
    """The study's batches whose ratings count in analyses: visible, not deleted, not excluded."""
    return (
        (RatingBatch.study_id == study_id)
        & RatingBatch.deleted_at.is_(None)
        & RatingBatch.excluded.is_(False)
        & visible_batches()
    )


class Job(Base):
    """A unit of long work (face stage, model run, fp16 check, report export) queued in the
    database and run by any worker; its progress and state are visible to every session."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "face_stage", "model_run", "fp16_check" or "report_export" (core.workflows.jobs.KINDS).
    kind: Mapped[str] = mapped_column(String(30))
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queued_by: Mapped[str] = mapped_column(String(200), default="")
    # "queued", "running", "done", "failed" or "cancelled".
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    # Claims so far: a job that keeps killing its worker fails instead of looping forever.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What is being done now ("faces", "enet_b0_8_va_mtl [1/3]"), and its counts and speed.
    step: Mapped[str] = mapped_column(String(200), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    rate: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
