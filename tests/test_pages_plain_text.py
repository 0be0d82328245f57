"""AppTest: markdown typed into a file name, "uploaded by" or a study name reaches the pages
escaped, so viewers' browsers neither fetch an outside image nor show a disguised link.

The batch is imported through the Ratings page's own upload wizard on a real SQLite file.
AppTest exposes each element's markdown source, which is what the browser renders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.access import Role
from db.models import RatingBatch, Stimulus
from db.queries import get_or_create_study
from ui.text import plain

TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[1]
HOME, RATINGS = str(ROOT / "app.py"), str(ROOT / "pages" / "2_Ratings.py")
ATTACK = "![x](http://evil.example/a.png) [Session expired - log in again](http://evil.example)"
FILE_NAME = "[results](http://evil.example) **urgent**.csv"
STUDY = "[Pilot](http://evil.example) ![](http://evil.example/s.png)"
RATINGS_FILE = "participant;image;emotion\nP1;img01.png;anger\nP2;img01.png;happy\n"
TEXT_ELEMENTS = ("markdown", "caption", "info", "success", "warning", "error", "title", "header",
                 "subheader", "toast")
LABELLED_ELEMENTS = ("expander", "metric", "button", "download_button", "toggle", "checkbox",
                     "text_input", "selectbox", "tabs")


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, STUDY, actor=Role.OPERATOR).id
        session.add(Stimulus(study_id=study_id, path="img01.png", sha256="1" * 64,
                             media_type="image/png", width=1, height=1, thumbnail=b""))
    return study_id


def rendered_markdown(at: AppTest) -> list[str]:
    """The markdown source of every text element and widget label on the page."""
    texts = [element.value for name in TEXT_ELEMENTS for element in at.get(name)]
    labels = [getattr(element, "label", "") for name in LABELLED_ELEMENTS for element in at.get(name)]
    return [str(text) for text in texts + labels]


def assert_no_live_links(texts: list[str]) -> None:
    live = [text for text in texts if "![" in text or "](" in text]
    assert not live, f"markdown images or links rendered from user text: {live}"


def import_attack_batch() -> AppTest:
    at = AppTest.from_file(RATINGS, default_timeout=TIMEOUT).run()
    at.file_uploader[0].set_value((FILE_NAME, RATINGS_FILE.encode(), "text/csv")).run()
    next(i for i in at.text_input if i.label.startswith("Uploaded by")).input(ATTACK)
    next(b for b in at.button if b.label.startswith("Import 2 ratings")).click().run()
    assert not at.exception
    return at


def test_ratings_page_shows_file_name_and_uploader_as_text(sessions, study) -> None:
    at = import_attack_batch()
    with sessions() as session:
        batch = session.get(RatingBatch, 1)
    assert (batch.file_name, batch.uploaded_by) == (FILE_NAME, ATTACK)  # stored as typed

    texts = rendered_markdown(at)
    assert_no_live_links(texts)
    assert any(plain(FILE_NAME) in success.value for success in at.success)
    assert any(f"by {plain(ATTACK)}" in caption.value for caption in at.caption)
    assert any(plain(FILE_NAME) in block.value for block in at.markdown)  # the batch row


def test_home_page_shows_the_study_name_as_text(sessions, study) -> None:
    import_attack_batch()
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == study
    assert_no_live_links(rendered_markdown(at))
    assert [metric.value for metric in at.metric][:2] == ["1", "1"]  # stimuli, batches
