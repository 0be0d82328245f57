"""Long DataFrames for the agreement engine, read from the selected study.

Column contracts (the statistics in core.agreement take exactly these):
- ratings:     stimulus, stimulus_id, rater, batch_id, emotion, valence, arousal, occurrence,
               repeat_policy (every stored rating, repeats included: StudyData resolves them
               by their batch's policy, test_retest compares them)
- predictions: stimulus, stimulus_id, model_id, label, valence, arousal, p_<canonical label>...
  (p_* is NaN for labels the model cannot output)
- stimuli:     stimulus, stimulus_id, sha256, intended_emotion, precropped, <one column per attribute>
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.ratings.labels import CANONICAL
from core.ratings.repeats import policy_of
from db.models import Prediction, Rating, RatingBatch, Stimulus, StimulusAttribute, analysed_batches
from db.predictions import visible_in

RATING_COLUMNS = [
    "stimulus", "stimulus_id", "rater", "batch_id", "emotion", "valence", "arousal", "occurrence",
]
PREDICTION_COLUMNS = ["stimulus", "stimulus_id", "model_id", "label", "valence", "arousal"] + [
    f"p_{label}" for label in CANONICAL
]


def load_ratings(
    session: Session, study_id: int, batch_ids: Iterable[int] | None = None
) -> pd.DataFrame:
    """Ratings of analysed batches (visible, not excluded, not deleted), optionally only
    ``batch_ids``."""
    query = (
        select(
            Stimulus.path, Rating.stimulus_id, Rating.rater, Rating.batch_id,
            Rating.emotion, Rating.valence, Rating.arousal, Rating.occurrence,
        )
        .join(RatingBatch, Rating.batch_id == RatingBatch.id)
        .join(Stimulus, Rating.stimulus_id == Stimulus.id)
        .where(analysed_batches(study_id))
    )
    if batch_ids is not None:
        query = query.where(RatingBatch.id.in_(list(batch_ids)))
    frame = pd.DataFrame(_driver_rows(session, query), columns=RATING_COLUMNS)
    policies = {
        batch_id: policy_of(mapping) for batch_id, mapping in session.execute(
            select(RatingBatch.id, RatingBatch.mapping).where(RatingBatch.study_id == study_id)
        )
    }
    frame["repeat_policy"] = frame["batch_id"].map(policies)
    return frame.astype({"valence": float, "arousal": float})


def load_stimuli(session: Session, study_id: int) -> pd.DataFrame:
    """One row per stimulus with its intended emotion and every metadata attribute as a column."""
    rows = session.execute(
        select(
            Stimulus.path, Stimulus.id, Stimulus.sha256, Stimulus.intended_emotion,
            Stimulus.precropped,
        ).where(Stimulus.study_id == study_id).order_by(Stimulus.path)
    ).all()
    frame = pd.DataFrame(
        rows, columns=["stimulus", "stimulus_id", "sha256", "intended_emotion", "precropped"]
    )
    attributes = session.execute(
        select(StimulusAttribute.stimulus_id, StimulusAttribute.key, StimulusAttribute.value)
        .join(Stimulus)
        .where(Stimulus.study_id == study_id)
    ).all()
    if attributes:
        wide = (
            pd.DataFrame(attributes, columns=["stimulus_id", "key", "value"])
            .pivot(index="stimulus_id", columns="key", values="value")
            .reset_index()
        )
        wide.columns.name = None
        frame = frame.merge(wide, on="stimulus_id", how="left")
    return frame


def load_predictions(
    session: Session, study_id: int, model_ids: Iterable[str] | None = None
) -> pd.DataFrame:
    """The newest successful prediction per (stimulus, model) for the study's stimuli."""
    # Probabilities come out of the JSON column in SQL, so the rows need no Python-side parsing.
    query = (
        select(
            Stimulus.path, Stimulus.id, Prediction.model_id, Prediction.label,
            Prediction.valence, Prediction.arousal,
            *(Prediction.probs[name].as_float() for name in CANONICAL),
        )
        .join(Stimulus, Stimulus.sha256 == Prediction.stimulus_sha256)
        .where(Stimulus.study_id == study_id, Prediction.status == "ok", visible_in(study_id))
        .order_by(Prediction.created_at, Prediction.id)
    )
    if model_ids is not None:
        query = query.where(Prediction.model_id.in_(list(model_ids)))
    frame = pd.DataFrame(_driver_rows(session, query), columns=PREDICTION_COLUMNS)
    return _newest_per_pair(frame).astype({c: float for c in PREDICTION_COLUMNS[4:]})


def _driver_rows(session: Session, query: Select) -> list[tuple]:
    """Rows of ``query`` straight from the DBAPI cursor: SQLAlchemy's per-row result handling
    took five times the query's own time on a FER+-size study (300k predictions). Only for
    queries whose columns need no result processing (numbers, text)."""
    result = session.connection().execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _newest_per_pair(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (stimulus, model): the values of the newest (last) row, in the order the pairs
    first appear."""
    keys = ["stimulus_id", "model_id"]
    if not frame.duplicated(keys).any():  # one row per pair, as after a single run per model
        return frame
    newest = frame.drop_duplicates(keys, keep="last").set_index(keys)
    first_seen = pd.MultiIndex.from_frame(frame[keys].drop_duplicates(keep="first"))
    return newest.reindex(first_seen).reset_index()[PREDICTION_COLUMNS]
