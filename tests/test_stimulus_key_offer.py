"""Issue 10 item 1: survey tools write stimulus ids their own way (``neutral_001`` for
``neutral_001.jpg``); the wizard and the CLI offer the key mode under which every id matches, and
the wizard keeps the file and the choices when the user visits another page.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.ratings.layouts import detect_mapping
from core.ratings.stimulus_keys import suggest_key_mode
from db.models import Rating, Stimulus, Study
from db.queries import get_or_create_study
from tests.markdown_text import shown

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
RATINGS_PAGE = "pages/2_Ratings.py"
TIMEOUT = 60
PATHS = ["set1/Neutral_001.jpg", "set1/happy_002.jpg", "set2/sad_003.png"]
STEMS = "participant,image,emotion\nP1,neutral_001,neutral\nP1,happy_002,happy\nP2,sad_003,sad\n"


def test_stems_match_when_the_study_names_files() -> None:
    suggestion = suggest_key_mode(PATHS, [], ["neutral_001", "happy_002", "sad_003"], "name", True)
    assert (suggestion.mode, suggestion.case_insensitive) == ("stem", True)
    assert suggestion.matches["neutral_001"] == "set1/Neutral_001.jpg"


def test_case_is_changed_only_when_needed() -> None:
    assert suggest_key_mode(PATHS, [], ["neutral_001"], "stem", False).case_insensitive is True
    exact = suggest_key_mode(PATHS, [], ["Neutral_001.jpg"], "stem", False)
    assert (exact.mode, exact.case_insensitive) == ("name", False)


def test_survey_metadata_columns_are_left_out_of_a_wide_export() -> None:
    """Qualtrics writes StartDate and "Duration (in seconds)" beside the ratings: read as stimuli
    they would be two unknown ids that match nothing, and no key mode could be offered."""
    frame = pd.DataFrame({"ResponseId": ["R_1"], "StartDate": ["2026-03-01"], "Duration (in seconds)": ["300"],
                          "neutral_001_valence": ["5"], "neutral_001_emotion": ["neutral"]})
    mapping = detect_mapping(frame)
    assert mapping.layout == "wide_rater"
    assert mapping.columns == {"rater": "ResponseId"}
    assert mapping.ignored == ["StartDate", "Duration (in seconds)"]


@pytest.mark.parametrize(("paths", "unknown"), [
    (PATHS, ["neutral_001", "nobody_009"]),  # one id matches nothing: no offer
    (["a/face.jpg", "b/face.jpg"], ["face"]),  # two stimuli would share the key
    (PATHS, []),  # nothing unknown: nothing to offer
])
def test_no_offer_unless_every_id_matches_exactly_one(paths: list[str], unknown: list[str]) -> None:
    assert suggest_key_mode(paths, [], unknown, "name", True) is None


def thumbnail() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "grey").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "Survey", actor=Role.OPERATOR).id
        for number, path in enumerate(PATHS, 1):
            session.add(Stimulus(study_id=study_id, path=path, sha256=f"{number:064x}",
                                 media_type="image/jpeg", width=4, height=4, thumbnail=thumbnail()))
    return study_id


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def ratings_page(at: AppTest) -> AppTest:
    return at.switch_page(RATINGS_PAGE).run()


def test_wizard_offers_the_stem_match_and_imports(sessions, study) -> None:
    at = ratings_page(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.file_uploader[0].set_value(("survey.csv", STEMS.encode(), "text/csv"))
    at.run()
    assert [m.value for m in at.metric] == ["3", "0", "3"]
    assert any("All 3 unknown stimulus ids match" in info.value for info in at.info)
    button(at, "Match stimulus ids by file name without extension").click().run()
    assert not at.exception
    with sessions() as session:
        assert session.get(Study, study).stimulus_key == "stem"
    assert [m.value for m in at.metric] == ["3", "3", "0"]
    button(at, "Import 3 ratings").click().run()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 3


def test_wizard_keeps_file_and_choices_across_pages(sessions, study) -> None:
    at = ratings_page(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.file_uploader[0].set_value(("survey.csv", STEMS.encode(), "text/csv"))
    at.run()
    rater = next(s for s in at.selectbox if s.label.startswith("rater column"))
    rater.select("image").run()
    at = at.switch_page("pages/1_Stimuli.py").run()
    at = ratings_page(at)
    assert not at.exception
    assert any("Continuing with survey.csv" in shown(info.value) for info in at.info)
    assert next(s for s in at.selectbox if s.label.startswith("rater column")).value == "image"
    button(at, "Discard this file").click().run()
    assert not at.selectbox or not any(s.label.startswith("rater column") for s in at.selectbox)


def test_cli_names_the_flag_and_the_flag_switches(tmp_path: Path, db_url: str, study) -> None:
    survey = tmp_path / "survey.csv"
    survey.write_text(STEMS, encoding="utf-8")
    command = [sys.executable, "-m", "core", "--db", db_url, "import-ratings", "--study", "Survey", str(survey)]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "--stimulus-key stem" in refused.stdout + refused.stderr
    done = subprocess.run(command + ["--stimulus-key", "stem"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 ratings" in done.stdout
