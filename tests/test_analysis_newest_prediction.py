"""load_predictions keeps the newest prediction of each (stimulus, model) pair, in the order the
pairs first appear (oldest first), with and without re-runs (issue 12 gave the common case of
one row per pair a shortcut)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
from sqlalchemy import insert, select

from core.access import Role
from core.workflows.demo import load_demo
from db.analysis import PREDICTION_COLUMNS, load_predictions
from db.models import Prediction, Stimulus

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def demo_with_runs(sessions, runs: list[tuple[str, str, list[tuple[int, str, int]]]]) -> tuple[int, list[int]]:
    """The demo study plus prediction runs (model, checkpoint, [(stimulus index, label, minute)]),
    inserted in the order given; returns the study id and the first stimuli's ids."""
    with sessions.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
        stimuli = session.execute(select(Stimulus.id, Stimulus.sha256).where(Stimulus.study_id == study_id)
                                  .order_by(Stimulus.path)).all()[:3]
        for model_id, checkpoint, rows in runs:
            session.execute(insert(Prediction), [
                {"stimulus_sha256": stimuli[index].sha256, "study_id": study_id, "model_id": model_id,
                 "checkpoint_sha256": checkpoint * 64, "preprocessing": "test", "detector": "none",
                 "status": "ok", "label": label, "probs": {label: 1.0},
                 "created_at": START + timedelta(minutes=minute)}
                for index, label, minute in rows])
    return study_id, [stimulus.id for stimulus in stimuli]


def loaded_rows(sessions, study_id: int, stimulus_ids: list[int], models: list[str]) -> list[tuple]:
    with sessions() as session:
        loaded = load_predictions(session, study_id, models)
    assert list(loaded.columns) == PREDICTION_COLUMNS
    pd.testing.assert_index_equal(loaded.index, pd.RangeIndex(len(loaded)))
    return [(stimulus_ids.index(s), m, label)
            for s, m, label in zip(loaded["stimulus_id"], loaded["model_id"], loaded["label"])]


def test_newest_row_wins_and_pairs_keep_their_first_order(sessions) -> None:
    # The re-run is inserted first: row ids and creation times disagree, the times decide.
    study_id, ids = demo_with_runs(sessions, [
        ("rerun-model", "b", [(0, "anger", 30), (1, "fear", 31), (2, "joy", 32)]),
        ("rerun-model", "a", [(0, "sadness", 10), (1, "surprise", 11)]),
        ("once-model", "a", [(0, "neutral", 20)]),
    ])
    assert loaded_rows(sessions, study_id, ids, ["rerun-model", "once-model"]) == [
        (0, "rerun-model", "anger"), (1, "rerun-model", "fear"), (0, "once-model", "neutral"),
        (2, "rerun-model", "joy")]


def test_one_row_per_pair_comes_back_in_creation_order(sessions) -> None:
    study_id, ids = demo_with_runs(sessions, [
        ("single-model", "a", [(0, "anger", 3), (1, "fear", 1), (2, "joy", 2)])])
    assert loaded_rows(sessions, study_id, ids, ["single-model"]) == [
        (1, "single-model", "fear"), (2, "single-model", "joy"), (0, "single-model", "anger")]
