"""A cheap fingerprint of everything an analysis of one study reads.

The dashboard caches computed reports keyed by this fingerprint (never by DataFrames): any
import, exclusion, deletion, metadata edit or new prediction changes it, so a cached report is
never stale, and computing it costs a few aggregate queries instead of loading the data.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    Prediction, Rating, RatingBatch, RegisteredModel, Stimulus, StimulusAttribute, analysed_batches,
)
from db.predictions import visible_in


def _text_size(column):
    """Summed length of a text column (portable: SQLite and PostgreSQL)."""
    return func.coalesce(func.sum(func.length(column)), 0)


def analysis_version(session: Session, study_id: int) -> tuple[object, ...]:
    """Hashable fingerprint of the study's analysable data (ratings, stimuli, predictions).

    Counts and maximum ids catch additions and removals; the summed text lengths catch edits of
    metadata values and intended emotions, which keep counts and ids unchanged.
    """
    batches = tuple(
        session.scalars(select(RatingBatch.id).where(analysed_batches(study_id)).order_by(RatingBatch.id))
    )
    ratings = session.execute(
        select(func.count(), func.max(Rating.id))
        .join(RatingBatch)
        .where(analysed_batches(study_id))
    ).one()
    stimuli = session.execute(
        select(
            func.count(), func.max(Stimulus.id), func.count(Stimulus.intended_emotion),
            _text_size(Stimulus.intended_emotion),
        ).where(Stimulus.study_id == study_id)
    ).one()
    attributes = session.execute(
        select(func.count(), func.max(StimulusAttribute.id), _text_size(StimulusAttribute.value))
        .join(Stimulus)
        .where(Stimulus.study_id == study_id)
    ).one()
    predictions = session.execute(
        select(func.count(), func.max(Prediction.id))
        .join(Stimulus, Stimulus.sha256 == Prediction.stimulus_sha256)
        .where(Stimulus.study_id == study_id, visible_in(study_id))
    ).one()
    models = session.execute(select(func.count(), func.max(RegisteredModel.created_at))).one()
    return (study_id, batches, *ratings, *stimuli, *attributes, *predictions, models[0], str(models[1]))
