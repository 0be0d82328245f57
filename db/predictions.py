"""Prediction cache queries: bulk key look-ups, per-batch writes, per-model summaries.

A prediction is keyed by (stimulus sha256, model id, weights fingerprint, preprocessing,
detector). Everything here works on many stimuli per statement: a cached re-run over a
thousand stimuli must cost a handful of queries, not one per stimulus.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import delete, insert, or_, select, tuple_
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from db.models import Prediction, RegisteredModel, Stimulus

# Well below every backend's bound-parameter limit (SQLite allows 32,766 since 3.32).
CHUNK = 500


@dataclass(frozen=True)
class StudyImage:
    """One distinct image of a study (stimuli sharing content share one entry)."""

    sha256: str
    path: str
    precropped: bool


@dataclass(frozen=True)
class CacheKey:
    """The model part of a prediction's cache key; the stimulus part is (sha256, detector)."""

    model_id: str
    weights: str
    preprocessing: str


@dataclass
class PredictionRow:
    """One result (or failure) to store for one image under a CacheKey."""

    sha256: str
    detector: str
    status: str = "ok"
    error: str | None = None
    label: str | None = None
    probs: dict[str, float] | None = None
    valence: float | None = None
    arousal: float | None = None
    extras: dict[str, Any] | None = field(default=None)


def study_images(session: Session, study_id: int) -> list[StudyImage]:
    """The study's distinct images in path order; an image counts as pre-cropped if any
    stimulus with that content is marked so."""
    rows = session.execute(
        select(Stimulus.sha256, Stimulus.path, Stimulus.precropped)
        .where(Stimulus.study_id == study_id)
        .order_by(Stimulus.path)
    ).all()
    images: dict[str, StudyImage] = {}
    for sha, path, precropped in rows:
        known = images.get(sha)
        if known is None:
            images[sha] = StudyImage(sha, path, bool(precropped))
        elif precropped and not known.precropped:
            images[sha] = StudyImage(sha, known.path, True)
    return list(images.values())


def cached_statuses(session: Session, key: CacheKey, wanted: dict[str, str]) -> dict[str, str]:
    """Status ("ok"/"error") of the stored predictions among ``wanted`` (sha256 -> detector)."""
    found: dict[str, str] = {}
    for chunk in _chunks(list(wanted), CHUNK):
        rows = session.execute(
            select(Prediction.stimulus_sha256, Prediction.detector, Prediction.status).where(
                *_key_filter(key), Prediction.stimulus_sha256.in_(chunk)
            )
        ).all()
        found.update({sha: status for sha, detector, status in rows if wanted[sha] == detector})
    return found


def save_predictions(
    session: Session, key: CacheKey, rows: Sequence[PredictionRow], study_id: int | None = None,
    *, actor: Role,
) -> None:
    """Store ``rows`` under ``key``, replacing rows with the same full key (a retried failure,
    a re-imported file, or a concurrent run that got there first). ``study_id`` scopes rows
    to one study (imported predictions); computed predictions leave it None and are shared."""
    require(actor, Action.RUN_MODELS if study_id is None else Action.UPLOAD_PREDICTIONS)
    if not rows:
        return
    pairs = [(row.sha256, row.detector) for row in rows]
    for chunk in _chunks(pairs, CHUNK):
        session.execute(
            delete(Prediction).where(
                *_key_filter(key),
                _study_filter(study_id),
                tuple_(Prediction.stimulus_sha256, Prediction.detector).in_(chunk),
            )
        )
    session.execute(
        insert(Prediction),
        [
            {
                "stimulus_sha256": row.sha256, "study_id": study_id, "model_id": key.model_id,
                "checkpoint_sha256": key.weights, "preprocessing": key.preprocessing,
                "detector": row.detector, "status": row.status, "error": row.error,
                "label": row.label, "probs": row.probs, "valence": row.valence,
                "arousal": row.arousal, "extras": row.extras,
            }
            for row in rows
        ],
    )


def delete_failed(session: Session, key: CacheKey, sha256s: Iterable[str], *, actor: Role) -> int:
    """Forget stored failures among ``sha256s`` so that a retry computes them again."""
    require(actor, Action.RUN_MODELS)
    removed = 0
    for chunk in _chunks(list(sha256s), CHUNK):
        result = session.execute(
            delete(Prediction).where(
                *_key_filter(key), Prediction.status == "error",
                Prediction.stimulus_sha256.in_(chunk),
            )
        )
        removed += result.rowcount or 0
    return removed


def latest_predictions(session: Session, study_id: int) -> pd.DataFrame:
    """Newest prediction per (stimulus, model) over the study, failures included.

    Columns: stimulus, sha256, model_id, status, error, detector, preprocessing, weights,
    created_at, note (what the face crop was cut from, for models whose face profile records
    it, e.g. EmoNet's FAN-box crop or its fallback; else None).
    """
    columns = ["stimulus", "sha256", "model_id", "status", "error", "detector", "preprocessing",
               "weights", "created_at", "extras"]
    rows = session.execute(
        select(
            Stimulus.path, Prediction.stimulus_sha256, Prediction.model_id, Prediction.status,
            Prediction.error, Prediction.detector, Prediction.preprocessing,
            Prediction.checkpoint_sha256, Prediction.created_at, Prediction.extras,
        )
        .join(Stimulus, Stimulus.sha256 == Prediction.stimulus_sha256)
        .where(Stimulus.study_id == study_id, visible_in(study_id))
        .order_by(Prediction.created_at, Prediction.id)
    ).all()
    frame = pd.DataFrame(rows, columns=columns)
    frame["note"] = [extras.get("crop") if isinstance(extras, dict) else None for extras in frame["extras"]]
    frame = frame.drop(columns="extras")
    return frame.drop_duplicates(["stimulus", "model_id"], keep="last").reset_index(drop=True)


def prediction_summary(session: Session, study_id: int) -> pd.DataFrame:
    """Per model: stimuli with a usable prediction (ok) and with a failure as newest result."""
    latest = latest_predictions(session, study_id)
    if latest.empty:
        return pd.DataFrame({"model_id": [], "ok": [], "failed": []}).astype(
            {"model_id": str, "ok": int, "failed": int}
        )
    counts = pd.crosstab(latest["model_id"], latest["status"])
    return pd.DataFrame(
        {
            "model_id": counts.index.astype(str),
            "ok": counts.get("ok", pd.Series(0, index=counts.index)).to_numpy(dtype=int),
            "failed": counts.get("error", pd.Series(0, index=counts.index)).to_numpy(dtype=int),
        }
    ).reset_index(drop=True)


def failed_stimuli(session: Session, study_id: int, model_id: str | None = None) -> pd.DataFrame:
    """Stimuli whose newest prediction failed, with the reason (columns as latest_predictions)."""
    latest = latest_predictions(session, study_id)
    failed = latest[latest["status"] == "error"]
    if model_id is not None:
        failed = failed[failed["model_id"] == model_id]
    return failed.reset_index(drop=True)


def registered_model(session: Session, model_id: str) -> RegisteredModel | None:
    return session.get(RegisteredModel, model_id)


def upsert_registered_model(
    session: Session, model_id: str, *, source: str, card: dict[str, Any],
    checkpoint_sha256: str | None = None, checkpoint_path: str | None = None,
    actor: Role,
) -> RegisteredModel:
    """Create or update the RegisteredModel row of a card model or an imported tool."""
    require(actor, Action.REGISTER_MODEL)
    row = session.get(RegisteredModel, model_id)
    if row is None:
        row = RegisteredModel(id=model_id, source=source)
        session.add(row)
    row.source = source
    row.card = card
    row.checkpoint_sha256 = checkpoint_sha256
    row.checkpoint_path = checkpoint_path
    session.flush()
    return row


def _key_filter(key: CacheKey) -> tuple:
    return (
        Prediction.model_id == key.model_id,
        Prediction.checkpoint_sha256 == key.weights,
        Prediction.preprocessing == key.preprocessing,
    )


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _study_filter(study_id: int | None):
    return Prediction.study_id.is_(None) if study_id is None else Prediction.study_id == study_id


def visible_in(study_id: int):
    """Predictions a study sees: the shared computed ones and its own imported ones."""
    return or_(Prediction.study_id.is_(None), Prediction.study_id == study_id)
