"""Queries for stored face detections (one row per stimulus content hash and detector version).

Row ``faces`` holds every face the detector found, most confident first, each as
``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] * 5] | None, "image_size": [w, h]}``
(the image size lets a "central" choice be made later without decoding the image again).
``chosen`` / ``choice_rule`` record the face used by the most recent run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from db.models import FaceDetection

_IN_CHUNK = 500  # stay far below SQLite's limit on bound parameters


def get_detections(
    session: Session, sha256s: Iterable[str], detector: str
) -> dict[str, FaceDetection]:
    """Stored rows of ``detector`` for the given stimuli, by stimulus sha256."""
    wanted = list(dict.fromkeys(sha256s))
    found: dict[str, FaceDetection] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = session.scalars(
            select(FaceDetection).where(
                FaceDetection.detector == detector, FaceDetection.stimulus_sha256.in_(chunk)
            )
        )
        found.update({row.stimulus_sha256: row for row in rows})
    return found


def detections_for(session: Session, sha256: str) -> list[FaceDetection]:
    """Every stored detection of one stimulus, newest first."""
    return list(
        session.scalars(
            select(FaceDetection)
            .where(FaceDetection.stimulus_sha256 == sha256)
            .order_by(FaceDetection.created_at.desc(), FaceDetection.id.desc())
        )
    )


def save_detection(
    session: Session,
    *,
    sha256: str,
    detector: str,
    faces: list[dict[str, Any]],
    chosen: int | None,
    choice_rule: str,
    status: str,
    error: str | None = None,
    actor: Role,
) -> FaceDetection:
    """Insert or replace the row of (``sha256``, ``detector``)."""
    require(actor, Action.RUN_MODELS)
    row = session.scalar(
        select(FaceDetection).where(
            FaceDetection.stimulus_sha256 == sha256, FaceDetection.detector == detector
        )
    )
    if row is None:
        row = FaceDetection(stimulus_sha256=sha256, detector=detector)
        session.add(row)
    row.faces = faces
    row.chosen = chosen
    row.choice_rule = choice_rule
    row.status = status
    row.error = error
    return row


def set_choice(session: Session, row_id: int, chosen: int | None, choice_rule: str, *, actor: Role) -> None:
    """Record which stored face a run used, without touching the detection itself."""
    require(actor, Action.RUN_MODELS)
    row = session.get(FaceDetection, row_id)
    if row is not None:
        row.chosen = chosen
        row.choice_rule = choice_rule


def status_counts(session: Session, sha256s: Iterable[str], detector: str) -> dict[str, int]:
    """How many of the stimuli have each status ("not run" for those without a row)."""
    wanted = list(dict.fromkeys(sha256s))
    rows = get_detections(session, wanted, detector)
    counts: dict[str, int] = {}
    for sha in wanted:
        status = rows[sha].status if sha in rows else "not run"
        counts[status] = counts.get(status, 0) + 1
    return counts
