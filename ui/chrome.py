"""Page chrome every page calls first: page config, optional password gate, study picker."""

from __future__ import annotations

import hmac
import os

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from db.engine import DB_URL_ENV, default_url, make_engine, make_sessionmaker
from db.queries import list_studies
from ui.text import plain

STUDY_KEY = "study_id"
STUDY_PARAM = "study"  # the study in the address, so a reload or a shared link keeps it


def _secret(name: str) -> str | None:
    try:
        return st.secrets.get(name)
    except FileNotFoundError:
        return None


@st.cache_resource(show_spinner="Opening the database…")
def _sessions_for(url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(url))


def sessions() -> sessionmaker[Session]:
    """The cached session factory for the configured database (secrets, env var, default)."""
    return _sessions_for(_secret("db_url") or os.environ.get(DB_URL_ENV) or default_url())


def _password_ok() -> bool:
    expected = _secret("password")
    if not expected or st.session_state.get("authenticated"):
        return True
    entered = st.text_input("Password", type="password", key="password_input")
    if entered and hmac.compare_digest(entered, expected):
        st.session_state["authenticated"] = True
        return True
    if entered:
        st.error("Wrong password. Ask the study owner for the shared password.")
    return False


def _remembered_study(ids: list[int]) -> int | None:
    """This session's study, else the one named in the address (``?study=3``)."""
    current = st.session_state.get(STUDY_KEY)
    if current in ids:
        return current
    try:
        named = int(st.query_params.get(STUDY_PARAM, ""))
    except ValueError:
        return None
    return named if named in ids else None


def page_setup(title: str, *, needs_study: bool = True) -> tuple[sessionmaker[Session], int | None]:
    """Configure the page, gate it, and return the session factory and selected study id.

    Pages that need a study stop with a hint when none exists yet.
    """
    st.set_page_config(page_title=f"{title} · FaceAgree", page_icon="🙂", layout="wide")
    if not _password_ok():
        st.stop()
    factory = sessions()
    with factory() as session:
        all_studies = list_studies(session)
    studies = {s.id: s.name for s in all_studies}
    demo_ids = {s.id for s in all_studies if s.is_demo}
    study_id = None
    if studies:
        ids = list(studies)
        current = _remembered_study(ids)
        study_id = st.sidebar.selectbox(
            "Study",
            ids,
            index=ids.index(current) if current in ids else 0,
            format_func=studies.get,
        )
        st.session_state[STUDY_KEY] = study_id
        st.query_params[STUDY_PARAM] = str(study_id)
        if study_id in demo_ids:
            st.sidebar.warning("Synthetic demo study: generated faces, ratings and model outputs.")
    st.title(plain(title))
    if needs_study and study_id is None:
        st.info("No study yet. Create one or load the demo study on the Home page.")
        st.stop()
    return factory, study_id
