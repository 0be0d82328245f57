"""The Models page's per-study prediction counts and failures, cached by the data fingerprint.

Both come from the newest prediction of every (stimulus, model) pair, which takes seconds on a
study of tens of thousands of stimuli; a re-render must not pay it again. Any new, replaced or
removed prediction changes the fingerprint (``db.versions.analysis_version``), so a cached
answer is never stale.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from db.predictions import failed_stimuli, prediction_summary
from ui.chrome import data_version, db_key

MAX_CACHED = 8


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED)
def _counts(_factory: sessionmaker[Session], db: str, study_id: int, version: tuple) -> pd.DataFrame:
    with _factory() as session:
        return prediction_summary(session, study_id)


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED)
def _failures(_factory: sessionmaker[Session], db: str, study_id: int, version: tuple) -> pd.DataFrame:
    with _factory() as session:
        return failed_stimuli(session, study_id)


def prediction_counts(factory: sessionmaker[Session], study_id: int) -> pd.DataFrame:
    """Per model: stimuli whose newest prediction is usable (``ok``) or a failure (``failed``)."""
    return _counts(factory, db_key(factory), study_id, data_version(factory, study_id))


def failures(factory: sessionmaker[Session], study_id: int, counts: pd.DataFrame) -> pd.DataFrame:
    """Stimuli whose newest prediction failed (as ``db.predictions.failed_stimuli``); not read
    at all when ``counts`` (:func:`prediction_counts`) has no failure."""
    if counts.empty or not counts["failed"].any():
        return pd.DataFrame(columns=["model_id", "stimulus", "detector", "error"])
    return _failures(factory, db_key(factory), study_id, data_version(factory, study_id))
