"""Imported (and synthetic demo) predictions belong to their study; computed ones are shared by
every study holding the same image bytes."""

from __future__ import annotations

import pytest

from core.access import Role
from core.faces.synthetic import PHOTO_NAME, demo_images
from core.workflows.demo import load_demo
from core.workflows.stimuli import import_files
from db.analysis import load_predictions
from db.models import Prediction, Stimulus
from db.predictions import CacheKey, PredictionRow, save_predictions
from db.stimuli import create_study

pytestmark = pytest.mark.backends


@pytest.fixture
def two_studies(sessions) -> tuple[int, int]:
    """The demo study and a pilot study sharing the demo's photo (same bytes)."""
    with sessions.begin() as session:
        demo_id = load_demo(session, actor=Role.OPERATOR)
        pilot = create_study(session, "pilot", actor=Role.OPERATOR)
        import_files(session, pilot.id, [(n, d) for n, d in demo_images() if n == PHOTO_NAME], actor=Role.OPERATOR)
        return demo_id, pilot.id


def test_demo_predictions_stay_in_the_demo_study(sessions, two_studies) -> None:
    demo_id, pilot_id = two_studies
    with sessions() as session:
        assert not load_predictions(session, demo_id).empty
        assert load_predictions(session, pilot_id).empty


def test_computed_predictions_are_shared_by_image_content(sessions, two_studies) -> None:
    with sessions.begin() as session:
        sha = session.query(Stimulus.sha256).filter_by(study_id=two_studies[1]).scalar()
        row = PredictionRow(sha256=sha, detector="mtcnn-v1", status="ok", label="happiness",
                            probs={"happiness": 1.0}, valence=0.5, arousal=0.1)
        save_predictions(session, CacheKey("enet_b0_8_va_mtl", "w" * 64, "emotiefflib-v1"), [row], actor=Role.OPERATOR)
    with sessions() as session:
        for study_id in two_studies:
            assert "enet_b0_8_va_mtl" in set(load_predictions(session, study_id)["model_id"])
        assert session.query(Prediction).filter_by(model_id="enet_b0_8_va_mtl").count() == 1
