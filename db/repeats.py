"""Repeated ratings across batches: which ratings of a new file repeat earlier batches.

Vote batches are left out: their anonymous raters belong to one batch and never repeat.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.ratings.layouts import PreparedRatings
from core.ratings.repeats import POLICY_KEY, RepeatsRefused, find_repeats
from db.models import Rating, RatingBatch, visible_batches

RATERS_PER_QUERY = 500  # stays far below every driver's bound-parameter limit


def earlier_ratings(session: Session, study_id: int, raters: list[str]) -> pd.DataFrame:
    """(stimulus_id, rater, batch_id) of the live batches (excluded ones too) for ``raters``."""
    rows = []
    for start in range(0, len(raters), RATERS_PER_QUERY):
        rows += session.execute(
            select(Rating.stimulus_id, Rating.rater, Rating.batch_id)
            .join(RatingBatch, Rating.batch_id == RatingBatch.id)
            .where(
                RatingBatch.study_id == study_id, RatingBatch.deleted_at.is_(None),
                visible_batches(), Rating.rater.in_(raters[start:start + RATERS_PER_QUERY]),
            )
        ).all()
    return pd.DataFrame(rows, columns=["stimulus_id", "rater", "batch_id"])


def repeats_for_import(session: Session, study_id: int, prepared: PreparedRatings) -> pd.DataFrame:
    """Pairs the new file rates more than once, in itself or with earlier batches (see
    :func:`core.ratings.repeats.find_repeats` for the columns)."""
    new = prepared.ratings
    earlier = None
    if prepared.layout != "votes" and len(new):
        earlier = earlier_ratings(session, study_id, sorted(new["rater"].astype(str).unique()))
    return find_repeats(new.astype({"stimulus_id": "int64"}), earlier)


def refuse_repeats(session: Session, study_id: int, prepared: PreparedRatings) -> None:
    """Raise :class:`RepeatsRefused` when the batch refuses repeats and has some."""
    if prepared.mapping.get(POLICY_KEY) != "refuse":
        return
    repeats = repeats_for_import(session, study_id, prepared)
    if len(repeats):
        raise RepeatsRefused(repeats)
