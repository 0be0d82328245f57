"""AppTest of the analysis pages on a study with emotion labels only (no valence or arousal from
raters or models), as FER+ and other vote-count data sets are.

Every valence and arousal estimate of such a study is empty, so a page that opens on a valence
metric shows an empty chart, "nan" or a column of "--". Each picker opens on the first choice
with an estimate; choices without any say so, and empty charts are not drawn.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from db.models import Prediction, Rating
from tests.analysis_seed import seed_study
from tests.markdown_text import shown
from tests.test_pages_analysis import FAST, TIMEOUT, titles

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def labels_only(sessions) -> int:
    study_id = seed_study(sessions, "labels only", n_stimuli=24, n_raters=6, n_models=3, seed=5).study_id
    with sessions.begin() as session:
        session.execute(update(Rating).values(valence=None, arousal=None))
        session.execute(update(Prediction).values(valence=None, arousal=None))
    return study_id


def run_page(page: str, study_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=TIMEOUT)
    at.session_state["study_id"] = study_id
    at.session_state["analysis:settings"] = FAST
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chosen(at: AppTest, key: str) -> object:
    return at.selectbox(key=key).value


def test_agreement_opens_on_label_metrics_and_shows_no_nan(labels_only: int) -> None:
    at = run_page("4_Agreement", labels_only)
    for key in ("agreement-loo-metric", "agreement-model-metric", "agreement-subgroup-metric"):
        assert chosen(at, key)[0] == "emotion", key
    assert all(metric.value != "nan" for metric in at.metric)
    assert "Fleiss' kappa (labels)" in [shown(metric.label) for metric in at.metric]
    options = at.selectbox(key="agreement-loo-metric").options
    assert any(option.startswith("valence") and option.endswith("(no estimates)") for option in options)


def test_model_diversity_draws_only_matrices_with_estimates(labels_only: int) -> None:
    at = run_page("7_Model_diversity", labels_only)
    assert titles(at) == ["Cohen's kappa (labels)"]
    captions = [caption.value for caption in at.caption]
    assert "CCC valence: no model pair has outputs for this." in captions


def test_across_pipelines_opens_on_estimates_and_draws_no_empty_planning_chart(labels_only: int) -> None:
    at = run_page("8_Across_pipelines", labels_only)
    for key in ("pipelines-differences-metric", "pipelines-summary-metric"):
        assert chosen(at, key)[0] == "emotion", key
    assert "Reliability of the mean of k raters" not in titles(at)
    assert any("Rater planning needs valence or arousal" in caption.value for caption in at.caption)


def test_disagreements_rank_by_a_metric_this_study_has(labels_only: int) -> None:
    at = run_page("9_Disagreements", labels_only)
    assert chosen(at, "disagreements-by-human") == "jsd"
    assert at.dataframe[0].value["disagreement"].notna().all()
    at.radio(key="disagreements-kind").set_value("models").run()
    assert chosen(at, "disagreements-by-models") == "distinct_label_share"
