"""AppTest for pages/2_Ratings.py: the upload wizard end to end and the batch list controls.

The ``data_dir`` fixture points FACEAGREE_DB_URL at a temporary SQLite file, which ui.chrome
reads, so each test drives the page against its own database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.access import Role
from db.analysis import load_ratings
from db.models import Rating, RatingBatch, Stimulus
from db.queries import get_or_create_study
from tests.markdown_text import shown

TIMEOUT = 60
PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "2_Ratings.py")
GOOD = "participant;image;emotion;valence\nP1;img01.png;1;4,5\nP2;img01.png;행복;9\n"
WITH_BAD_ROWS = GOOD + "P3;img77.png;sad;3\nP4;img02.png;sad;12\n"


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "Pilot", actor=Role.OPERATOR).id
        for number in (1, 2):
            session.add(Stimulus(
                study_id=study_id, path=f"img0{number}.png", sha256=f"{number:064x}",
                media_type="image/png", width=1, height=1, thumbnail=b"",
            ))
    return study_id


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def selectbox(at: AppTest, label: str):
    return next(s for s in at.selectbox if s.label.startswith(label))


def upload(at: AppTest, text: str, name: str = "ratings.csv") -> AppTest:
    at.file_uploader[0].set_value((name, text.encode("utf-8"), "text/csv"))
    return at.run()


def batches(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(RatingBatch))


def test_page_without_a_study_says_what_to_do(data_dir) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("No study yet" in info.value for info in at.info)


def test_upload_wizard_partial_import_then_duplicate_warning(sessions, study) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    at = upload(at, WITH_BAD_ROWS)
    assert not at.exception
    assert selectbox(at, "Layout").value == "long"
    assert selectbox(at, "rater column").value == "participant"
    assert any("declare the scale of valence" in w.value for w in at.warning)
    at.text_area[0].input("1=anger").run()
    selectbox(at, "valence scale").select("sam9").run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["4", "2", "2"]
    problems = at.dataframe[-1].value
    assert problems[["row", "kind"]].values.tolist() == [[4, "unknown_stimulus"], [5, "out_of_scale"]]
    assert button(at, "Import all rows").disabled
    at.text_input[0].input("Ana")
    button(at, "Import the 2 valid ratings only").click().run()
    assert not at.exception
    assert any("batch #1 stored with 2 ratings" in s.value for s in at.success)
    with sessions() as session:
        stored = load_ratings(session, study)
        batch = session.get(RatingBatch, 1)
    assert sorted(stored["emotion"]) == ["anger", "happiness"]
    assert (batch.uploaded_by, batch.n_rejected, batch.label_map) == ("Ana", 2, {"1": "anger"})

    at = upload(at, WITH_BAD_ROWS)  # the uploader was emptied; the same file again
    assert any("already imported as batch #1" in shown(w.value) for w in at.warning)


def test_clean_file_imports_in_one_click_all_or_nothing(sessions, study) -> None:
    at = upload(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run(), GOOD)
    at.text_area[0].input("1=anger").run()
    selectbox(at, "valence scale").select("sam9").run()
    assert any("Every row is valid" in s.value for s in at.success)
    button(at, "Import 2 ratings").click().run()
    assert not at.exception and batches(sessions) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 2


def test_wide_file_with_declared_dimension_and_custom_scale(sessions, study) -> None:
    at = upload(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run(),
                "who,img01.png,img02.png\nP1,0,10\nP2,5,\n")
    assert selectbox(at, "Layout").value == "wide_rater"
    selectbox(at, "Dimension of columns").select("arousal").run()
    selectbox(at, "arousal scale").select("custom").run()
    assert [n.value for n in at.number_input] == [0.0, 10.0]  # prefilled from the data
    assert not at.exception
    button(at, "Import 3 ratings").click().run()
    with sessions() as session:
        batch = session.get(RatingBatch, 1)
        values = sorted(load_ratings(session, study)["arousal"])
    assert batch.scales == {"arousal": {"name": "custom", "low": 0.0, "high": 10.0}}
    assert values == [-1.0, 0.0, 1.0]


def test_batch_list_exclude_delete_and_undo(sessions, study) -> None:
    at = upload(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run(), GOOD)
    at.text_area[0].input("1=anger").run()
    selectbox(at, "valence scale").select("sam9").run()
    button(at, "Import 2 ratings").click().run()
    at.toggle[0].set_value(True).run()
    with sessions() as session:
        assert session.get(RatingBatch, 1).excluded
    button(at, "Delete").click().run()
    with sessions() as session:
        assert session.get(RatingBatch, 1).deleted_at is not None
    button(at, "Undo delete").click().run()
    assert not at.exception
    with sessions() as session:
        batch = session.get(RatingBatch, 1)
        assert batch.deleted_at is None and batch.excluded


def test_unreadable_file_shows_a_clear_message(study) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.file_uploader[0].set_value(("broken.xlsx", b"PK\x03\x04 not really", "application/zip"))
    at.run()
    assert not at.exception
    assert any("broken.xlsx" in shown(e.value) and "Excel" in e.value for e in at.error)


def test_a_scale_unlike_earlier_batches_needs_a_tick_and_the_hint_uses_the_study(sessions, study) -> None:
    clean = "participant,image,valence\nP1,img01.png,2\nP2,img01.png,8\n"
    at = upload(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run(), clean)
    selectbox(at, "valence scale").select("sam9").run()
    button(at, "Import 2 ratings").click().run()
    assert batches(sessions) == 1

    typo = "participant,image,valence\nP3,img02.png,3\nP4,img02.png,12\n"
    at = upload(at, typo, name="second.csv")
    assert "study's earlier batches" in shown(selectbox(at, "valence scale").label)
    assert "(12)" in shown(selectbox(at, "valence scale").label)
    selectbox(at, "valence scale").select("0..100").run()
    assert any("earlier batches of this study declared SAM 1-9" in shown(w.value) for w in at.warning)
    assert not any(b.label.startswith("Import 2 ratings") for b in at.button)
    next(c for c in at.checkbox if "slider 0..100" in shown(c.label)).check().run()
    button(at, "Import 2 ratings").click().run()
    assert not at.exception
    assert batches(sessions) == 2
