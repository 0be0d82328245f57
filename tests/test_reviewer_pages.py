"""AppTest of every page logged in as a reviewer: no write widget at all, faces blurred, one study.

Logins go through the real password field with hashes in ``at.secrets``, as in secrets.toml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.access.passwords import hash_password
from core.workflows.demo import load_demo
from db.queries import get_or_create_study
from ui.chrome import PASSWORD_KEY, ROLE_KEY

ROOT = Path(__file__).resolve().parents[1]
# Home runs through the app.py router (its page links need st.navigation).
PAGES = ["app.py", *sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if p.name != "0_Home.py")]
PASSWORDS = {"owner": "o-pass", "coauthor": "c-pass", "reviewer": "r-pass"}
HASHES = {role: hash_password(password) for role, password in PASSWORDS.items()}
# Buttons a reviewer may press: none of them writes.
READ_ONLY_BUTTONS = {"Log out", "Details", "Close"}


@pytest.fixture
def demo_study(sessions) -> int:
    with sessions.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
        get_or_create_study(session, "Other study", actor=Role.OPERATOR)
    return study_id


def logged_in(page: str, role: str, scope: str | None = None, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    at.secrets["passwords"] = HASHES
    if scope:
        at.secrets["study_scope"] = {"reviewer": scope}
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.text_input(key=PASSWORD_KEY).input(PASSWORDS[role]).run()
    assert at.session_state[ROLE_KEY] is Role(role)
    return at


@pytest.mark.parametrize("page", PAGES)
def test_a_reviewer_sees_no_write_widget(demo_study, page: str) -> None:
    at = logged_in(page, "reviewer")
    assert not at.exception
    assert at.get("file_uploader") == []
    assert {button.label for button in at.button} <= READ_ONLY_BUTTONS
    # The only toggles a reviewer gets show more columns of a table: a view, not a write.
    assert all(toggle.key.endswith("-all-columns") for toggle in at.toggle)
    assert at.get("form") == []


@pytest.mark.parametrize("page", ["app.py", "pages/1_Stimuli.py", "pages/2_Ratings.py", "pages/3_Models.py"])
def test_a_coauthor_gets_the_upload_widgets(demo_study, page: str) -> None:
    at = logged_in(page, "coauthor")
    assert not at.exception
    if page != "app.py":  # the home page's writes (studies, demo, bundles) are the owner's
        assert at.get("file_uploader")


def test_a_reviewer_sees_blurred_thumbnails_until_the_study_allows_faces(demo_study, sessions) -> None:
    from db.stimuli import set_reviewers_see_faces
    at = logged_in("pages/1_Stimuli.py", "reviewer")
    assert any("blurred thumbnails only" in caption.value for caption in at.caption)
    with sessions.begin() as session:
        set_reviewers_see_faces(session, demo_study, True, actor=Role.OWNER)
    at.run()
    assert not any("blurred thumbnails only" in caption.value for caption in at.caption)


def test_a_reviewer_sees_placeholders_where_no_thumbnail_is_stored(demo_study, sessions) -> None:
    from db.models import Stimulus
    from sqlalchemy import select, update
    with sessions.begin() as session:
        session.execute(update(Stimulus).where(Stimulus.study_id == demo_study).values(thumbnail=b""))
        first = session.scalar(select(Stimulus.id).where(Stimulus.study_id == demo_study).order_by(Stimulus.path))
    at = logged_in("pages/1_Stimuli.py", "reviewer")
    assert not at.exception and at.image
    at.button(key=f"detail_{first}").click().run()
    assert not at.exception


def test_a_scoped_reviewer_cannot_open_another_study(demo_study, sessions) -> None:
    from db.models import Study
    from sqlalchemy import select
    with sessions() as session:
        other = session.scalar(select(Study.id).where(Study.name == "Other study"))
        scope = session.get(Study, demo_study).name
    at = logged_in("pages/4_Agreement.py", "reviewer", scope=scope, query={"study": str(other)})
    assert any("only" in error.value for error in at.error)
    home = logged_in("app.py", "reviewer", scope=scope)
    assert home.sidebar.selectbox[0].options == [scope]
