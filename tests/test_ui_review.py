"""AppTests for what a walk through the app in a real browser found: stale model lists after
registering a card, face-stage feedback, cut-off rating problem messages, wide tables whose
estimate sat off screen, "null" in heatmap cells, and a study lost on reload."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.io.storage import store_bytes
from core.reporting import charts
from core.reporting.exports import chart_to_svg
from db.models import Stimulus, Study
from db.queries import get_or_create_study
from tests.model_fakes import astronaut
from tests.test_card_models import TinyNet, card_text, onnx_bytes
from tests.test_page_models import wait_for_job
from tests.test_pages_analysis import FAST
from tests.analysis_seed import seed_study
from tests.markdown_text import shown
from ui.downloads import leading

ROOT = Path(__file__).resolve().parents[1]
MODELS = str(ROOT / "pages" / "3_Models.py")
RATINGS = str(ROOT / "pages" / "2_Ratings.py")
AGREEMENT = str(ROOT / "pages" / "4_Agreement.py")
TIMEOUT = 120


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


@pytest.fixture
def photo_study(sessions) -> int:
    """One uncropped photo (scikit-image's astronaut, downsized), so the face stage has work."""
    buffer = io.BytesIO()
    Image.fromarray(astronaut()[0]).resize((256, 256)).save(buffer, "PNG")
    with sessions.begin() as session:
        study = Study(name="Photos")
        session.add(study)
        session.flush()
        session.add(Stimulus(study_id=study.id, path="astronaut.png", sha256=store_bytes(buffer.getvalue()),
                             media_type="image/png", width=256, height=256, thumbnail=b""))
        return study.id


def test_a_registered_card_model_is_runnable_at_once(sessions, photo_study: int) -> None:
    """The Run tab is built before the Add-a-model tab in one script run: without a rerun the
    new model stayed 'not ready' there until the page was reloaded."""
    at = AppTest.from_file(MODELS, default_timeout=TIMEOUT).run()
    assert any("No model has its checkpoint yet" in info.value for info in at.info)
    at.file_uploader(key="card_file").set_value(("tiny.toml", card_text("tiny").encode(), "text/plain"))
    at.file_uploader(key="card_model").set_value(("tiny.onnx", onnx_bytes(TinyNet()), "application/octet-stream"))
    at.run()
    button(at, "Register model").click().run()
    assert not at.exception
    assert any("Registered Tiny test model (tiny)" in shown(s.value) for s in at.success)
    assert at.multiselect[0].label == "Models to run" and at.multiselect[0].value == ["tiny"]


@pytest.mark.slow
def test_face_stage_reports_what_it_found(sessions, photo_study: int) -> None:
    at = AppTest.from_file(MODELS, default_timeout=TIMEOUT).run()
    assert any("detection (haar): not run yet: 1" in shown(c.value) for c in at.caption)
    button(at, "Run face stage").click().run()
    assert not at.exception
    assert any("Queued job #1: face stage (haar)" in shown(s.value) for s in at.success)
    wait_for_job(sessions, 1)  # run by this server's in-process worker thread
    at.run()
    assert any("detection (haar): one face: 1" in shown(c.value) for c in at.caption)


def test_rating_problems_show_one_full_message_per_kind(sessions) -> None:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "Pilot", actor=Role.OPERATOR).id
        session.add(Stimulus(study_id=study_id, path="img01.png", sha256="1" * 64, media_type="image/png",
                             width=1, height=1, thumbnail=b""))
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT).run()
    text = "rater,image,valence\nP1,img01.png,5\nP1,ghost.png,5\nP2,img01.png,12\n"
    at.file_uploader[0].set_value(("r.csv", text.encode(), "text/csv"))
    at.run()
    next(s for s in at.selectbox if s.label.startswith("valence scale")).select("sam9").run()
    assert not at.exception
    errors = at.dataframe[-1].value
    bullets = next(shown(m.value) for m in at.markdown if "**unknown stimulus**" in m.value)
    unknown = errors.loc[errors["kind"] == "unknown_stimulus", "message"].iloc[0]
    scale = errors.loc[errors["kind"] == "out_of_scale", "message"].iloc[0]
    assert f"(1 rows; e.g. row 3, column `image`, value `ghost.png`): {unknown}" in bullets
    assert "**out-of-scale value**" in bullets and scale in bullets


def test_custom_scale_says_to_widen_the_observed_range(sessions) -> None:
    with sessions.begin() as session:
        get_or_create_study(session, "Pilot", actor=Role.OPERATOR)
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT).run()
    at.file_uploader[0].set_value(("r.csv", b"rater,image,valence\nP1,a.png,2\nP2,a.png,6\n", "text/csv"))
    at.run()
    next(s for s in at.selectbox if s.label.startswith("valence scale")).select("custom").run()
    assert any("ends of the scale raters used" in c.value for c in at.caption)


def test_leading_puts_the_estimate_in_view() -> None:
    display = pd.DataFrame(columns=["dimension", "form", "label", "description", "estimate [95% CI]", "F"])
    assert leading(display, ("dimension", "label", "estimate", "missing")) == [
        "dimension", "label", "estimate [95% CI]", "form", "description", "F"]
    assert leading(display, ()) is None


@pytest.mark.slow
def test_icc_table_shows_the_estimate_before_the_long_labels(sessions) -> None:
    study_id = seed_study(sessions, "icc", n_stimuli=12, n_raters=4, seed=5).study_id
    at = AppTest.from_file(AGREEMENT, default_timeout=TIMEOUT)
    at.session_state["study_id"] = study_id
    at.session_state["analysis:settings"] = FAST
    at.run()
    assert not at.exception
    icc = next(d for d in at.dataframe if "pingouin_legacy" in d.value.columns)
    assert list(icc.proto.column_order[:3]) == ["dimension", "label", "estimate [95% CI]"]


def test_heatmap_cells_without_a_value_read_n_a() -> None:
    matrix = pd.DataFrame({"model_a": ["m1", "m1", "m2", "m2"], "model_b": ["m1", "m2", "m1", "m2"],
                           "estimate": [float("nan"), 0.25, 0.25, 1.0]})
    svg = chart_to_svg(charts.model_heatmap(matrix, metric="kappa"))
    assert ">n/a<" in svg and ">null<" not in svg and ">0.25<" in svg


def test_study_comes_from_the_address_and_is_written_back(sessions) -> None:
    with sessions.begin() as session:
        first = get_or_create_study(session, "First", actor=Role.OPERATOR).id
        second = get_or_create_study(session, "Second", actor=Role.OPERATOR).id
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT)
    at.query_params["study"] = str(second)
    at.run()
    assert at.sidebar.selectbox[0].value == second
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT).run()
    assert at.sidebar.selectbox[0].value == first and at.query_params["study"] == str(first)
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT)
    at.query_params["study"] = "not-a-number"
    at.run()
    assert not at.exception and at.sidebar.selectbox[0].value == first


def test_uploader_name_is_offered_again_for_the_next_file_and_provenance_is_labelled(sessions) -> None:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "Pilot", actor=Role.OPERATOR).id
        session.add(Stimulus(study_id=study_id, path="img01.png", sha256="1" * 64, media_type="image/png",
                             width=1, height=1, thumbnail=b""))
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT).run()
    for number, text in enumerate(("rater,image,valence\nP1,img01.png,5\n", "rater,image,valence\nP2,img01.png,6\n")):
        at.file_uploader[0].set_value((f"r{number}.csv", text.encode(), "text/csv"))
        at.run()
        next(s for s in at.selectbox if s.label.startswith("valence scale")).select("sam9").run()
        by = next(t for t in at.text_input if t.label.startswith("Uploaded by"))
        assert by.value == ("" if number == 0 else "Ana")
        if number == 0:
            by.input("Ana")
        button(at, "Import 1 ratings").click().run()
        assert not at.exception
    assert any("r1.csv: batch #2 stored" in shown(s.value) for s in at.success)
    facts = next(d.value for d in at.dataframe if "value" in d.value.columns)
    assert facts.loc["uploaded by", "value"] == "Ana"


def test_gap_panel_title_says_which_group_is_subtracted() -> None:
    groups = pd.DataFrame({"model_id": ["m1", "m1"], "group": ["female", "male"], "estimate": [0.6, 0.4],
                           "ci_low": [0.5, 0.3], "ci_high": [0.7, 0.5]})
    one_pair = pd.DataFrame({"model_id": ["m1"], "group_a": ["female"], "group_b": ["male"],
                             "estimate": [0.2], "ci_low": [0.1], "ci_high": [0.3]})
    spec = charts.subgroup_gap_chart(groups, one_pair).to_dict()
    assert spec["hconcat"][1]["title"] == "gap: female − male"
    two_pairs = pd.concat([one_pair, one_pair.assign(group_b="other")], ignore_index=True)
    spec = charts.subgroup_gap_chart(groups, two_pairs).to_dict()
    assert spec["hconcat"][1]["title"].startswith("gap between groups (first minus second")
