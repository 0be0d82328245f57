"""The synthetic demo study: built through the real imports, labelled synthetic, idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.access import Role
from core.ratings.labels import CANONICAL
from core.workflows.demo import DEMO_MODELS, DEMO_NAME, N_CARTOONS, load_demo
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.models import Prediction, RegisteredModel, Study
from db.ratings import list_batches


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """One demo database for the module (building it draws 25 images)."""
    from db.engine import DATA_DIR_ENV, make_engine, make_sessionmaker

    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(folder))
        engine = make_engine(f"sqlite:///{folder / 'demo.sqlite'}")
        factory = make_sessionmaker(engine)
        with factory.begin() as session:
            study_id = load_demo(session, actor=Role.OPERATOR)
        yield factory, study_id
        engine.dispose()


def test_demo_study_is_labelled_synthetic(demo) -> None:
    factory, study_id = demo
    with factory() as session:
        study = session.get(Study, study_id)
    assert study.is_demo and study.name == DEMO_NAME
    assert "synthetic" in study.name.lower() and "SYNTHETIC" in study.description


def test_demo_has_stimuli_metadata_and_intended_emotions(demo) -> None:
    factory, study_id = demo
    with factory() as session:
        stimuli = load_stimuli(session, study_id)
    assert len(stimuli) == N_CARTOONS + 1
    assert {"poser_gender", "age_group"} <= set(stimuli.columns)
    posed = stimuli.loc[stimuli["stimulus"].str.contains("_0")]
    assert (posed["intended_emotion"] == posed["stimulus"].str.extract(r"demo/(\w+?)_")[0]).all()


def test_demo_ratings_come_from_a_long_and_a_wide_batch(demo) -> None:
    factory, study_id = demo
    with factory() as session:
        batches = list_batches(session, study_id)
        ratings = load_ratings(session, study_id)
    assert sorted(b.layout for b in batches) == ["long", "wide_rater"]
    assert all(b.n_rejected == 0 and b.n_stimuli == N_CARTOONS + 1 for b in batches)
    assert ratings["rater"].nunique() == 12
    assert set(ratings["emotion"]) <= set(CANONICAL)
    assert ratings[["valence", "arousal"]].abs().max().max() <= 1.0


def test_demo_predictions_for_clearly_named_fake_models(demo) -> None:
    factory, study_id = demo
    with factory() as session:
        predictions = load_predictions(session, study_id)
        models = {m.id: m for m in session.scalars(select(RegisteredModel))}
        checkpoints = set(session.scalars(select(Prediction.checkpoint_sha256)))
    assert set(predictions["model_id"]) == {m.model_id for m in DEMO_MODELS}
    assert checkpoints == {"synthetic"}
    assert all(m.source == "imported" and m.card["synthetic"] for m in models.values())
    seven = predictions.loc[predictions["model_id"] == "demo-model-c"]
    assert seven["p_contempt"].isna().all() and (seven["label"] != "contempt").all()
    probs = predictions[[f"p_{label}" for label in CANONICAL]].fillna(0).sum(axis=1)
    assert probs.round(6).eq(1).all()


def test_loading_twice_returns_the_existing_study(demo) -> None:
    factory, study_id = demo
    with factory.begin() as session:
        assert load_demo(session, actor=Role.OPERATOR) == study_id
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
        assert len(list_batches(session, study_id)) == 2
