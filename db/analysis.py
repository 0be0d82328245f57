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

import io
from collections.abc import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Select, Text, cast, func, select
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
    ``batch_ids``. Ratings name stimuli of their own study (imports match names within it)."""
    query = (
        select(
            Rating.stimulus_id, Rating.rater, Rating.batch_id,
            Rating.emotion, Rating.valence, Rating.arousal, Rating.occurrence,
        )
        .join(RatingBatch, Rating.batch_id == RatingBatch.id)
        .join(Stimulus, Rating.stimulus_id == Stimulus.id)
        .where(analysed_batches(study_id))
    )
    if batch_ids is not None:
        query = query.where(RatingBatch.id.in_(list(batch_ids)))
    frame = pd.DataFrame(_driver_rows(session, query), columns=RATING_COLUMNS[1:])
    frame = _with_paths(session, study_id, frame)
    policies = {
        batch_id: policy_of(mapping) for batch_id, mapping in session.execute(
            select(RatingBatch.id, RatingBatch.mapping).where(RatingBatch.study_id == study_id)
        )
    }
    frame["repeat_policy"] = frame["batch_id"].map(policies)
    return frame.astype({"valence": float, "arousal": float})


def load_stimuli(session: Session, study_id: int) -> pd.DataFrame:
    """One row per stimulus with its intended emotion and every metadata attribute as a column."""
    rows = _driver_rows(session, select(
        Stimulus.path, Stimulus.id, Stimulus.sha256, Stimulus.intended_emotion, Stimulus.precropped,
    ).where(Stimulus.study_id == study_id).order_by(Stimulus.path))
    frame = pd.DataFrame(
        rows, columns=["stimulus", "stimulus_id", "sha256", "intended_emotion", "precropped"]
    )
    if rows:  # SQLite's driver gives 0 and 1
        frame["precropped"] = frame["precropped"].astype(bool)
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
    query = (
        select(
            Stimulus.id, Prediction.model_id, Prediction.label,
            Prediction.valence, Prediction.arousal, _probabilities_array(session),
        )
        .join(Stimulus, Stimulus.sha256 == Prediction.stimulus_sha256)
        .where(Stimulus.study_id == study_id, Prediction.status == "ok", visible_in(study_id))
        .order_by(Prediction.created_at, Prediction.id)
    )
    if model_ids is not None:
        query = query.where(Prediction.model_id.in_(list(model_ids)))
    rows = _driver_rows(session, query)
    probabilities = _parse_probabilities([row[-1] for row in rows])
    frame = pd.DataFrame([row[:-1] for row in rows], columns=PREDICTION_COLUMNS[1:6])
    del rows  # 300k row tuples on a FER+-size study: gone before the next allocations
    frame = _with_paths(session, study_id, frame)
    frame[PREDICTION_COLUMNS[6:]] = probabilities
    return _newest_per_pair(frame).astype({c: float for c in PREDICTION_COLUMNS[4:]})


def _probabilities_array(session: Session) -> ColumnElement[str]:
    """The canonical labels' probabilities of a prediction as one JSON array text, null where the
    model has no such label. One array per row, parsed by numpy, took half the time of one
    JSON look-up per label in SQL and a float object per value (FER+ size, SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.json_build_array(*(Prediction.probs[name] for name in CANONICAL)), Text)
    return func.json_extract(Prediction.probs, *(f'$."{name}"' for name in CANONICAL))


def _parse_probabilities(arrays: list[str | None]) -> np.ndarray:
    """``[0.1, 0.2, null, ...]`` texts (None: no probabilities) as a float matrix, one column per
    canonical label, NaN for null."""
    if not arrays:
        return np.empty((0, len(CANONICAL)))
    missing = ",".join(["nan"] * len(CANONICAL))
    lines = "\n".join(missing if text is None else text[1:-1] for text in arrays)
    return np.loadtxt(io.StringIO(lines.replace("null", "nan")), delimiter=",", ndmin=2)


def _with_paths(session: Session, study_id: int, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the path of each row's stimulus (one of ``study_id``) as a first column
    ``stimulus``: one string per stimulus shared by its rows, where a joined path column made a
    string per row."""
    if frame.empty:  # the object dtype of the other columns of an empty frame
        paths = pd.Series([], dtype=object)
    else:
        by_id = pd.Series(dict(_driver_rows(
            session, select(Stimulus.id, Stimulus.path).where(Stimulus.study_id == study_id)
        )), dtype="str")
        paths = by_id.reindex(frame["stimulus_id"]).reset_index(drop=True)
    return pd.concat([paths.rename("stimulus"), frame], axis=1)


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
