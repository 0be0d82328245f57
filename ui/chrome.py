"""Page chrome every page calls first: page config, login and role, study picker.

The role lives in the session state (:func:`role`); pages pass it to every write function,
which refuses what the role may not do, and ask :func:`can` before showing a write widget.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, allowed
from core.access.logins import LoginConfig, read_config
from db.engine import DB_URL_ENV, default_url, make_engine, make_sessionmaker
from db.models import Study
from db.queries import list_studies
from db.versions import analysis_version
from ui.text import plain

STUDY_KEY = "study_id"
STUDY_PARAM = "study"  # the study in the address, so a reload or a shared link keeps it
PASSWORD_KEY = "password_input"
ROLE_KEY = "role"
LOGIN_KEY = "login_via"
FREE_TRIES = 5  # wrong passwords before the first wait
FIRST_WAIT_S = 2.0  # doubles with every further wrong password
MAX_WAIT_S = 15 * 60.0


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


def db_key(factory: sessionmaker[Session]) -> str:
    """The database URL (password hidden) naming the database in cache keys."""
    return factory.kw["bind"].url.render_as_string(hide_password=True)


def data_version(factory: sessionmaker[Session], study_id: int) -> tuple[object, ...]:
    """The study's data fingerprint (``db.versions.analysis_version``) naming its data in cache
    keys; cheap enough for every re-render."""
    with factory() as session:
        return analysis_version(session, study_id)


@dataclass
class PasswordThrottle:
    """Wrong passwords from one client; after :data:`FREE_TRIES` each one doubles the wait."""

    failures: int = 0
    locked_until: float = 0.0

    def wait_s(self, now: float) -> float:
        return max(0.0, self.locked_until - now)

    def record_failure(self, now: float) -> None:
        self.failures += 1
        extra = self.failures - FREE_TRIES
        if extra >= 0:
            self.locked_until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2**extra)


# Held by the server process, not the browser session: a reload or a new tab does not reset it.
_THROTTLES: dict[str, PasswordThrottle] = {}
_THROTTLES_LOCK = threading.Lock()
MAX_CLIENTS = 10_000  # beyond this, clients that are not waiting are forgotten


def client_key() -> str:
    """Who is guessing: the connection's address; behind a reverse proxy on this host (Streamlit
    then sees localhost) the address the proxy reports in X-Real-IP; else one local client."""
    address = st.context.ip_address
    if isinstance(address, str) and address:  # not a string when there is no real connection
        return address
    return st.context.headers.get("X-Real-IP") or "local"


def password_throttle(client: str) -> PasswordThrottle:
    with _THROTTLES_LOCK:
        if len(_THROTTLES) >= MAX_CLIENTS:
            now = time.monotonic()
            for key in [key for key, throttle in _THROTTLES.items() if not throttle.wait_s(now)]:
                del _THROTTLES[key]
        return _THROTTLES.setdefault(client, PasswordThrottle())


def login_config() -> LoginConfig:
    """The login sections of secrets.toml (nothing configured: an open app)."""
    try:
        return read_config(st.secrets.to_dict())
    except FileNotFoundError:
        return LoginConfig()


def role() -> Role:
    """The acting role of this session; every page passes it to the write functions."""
    return st.session_state.get(ROLE_KEY, Role.REVIEWER)


def can(action: Action) -> bool:
    """Whether this session's role may do ``action`` (pages show write widgets only then)."""
    return allowed(role(), action)


def _check_password() -> None:
    """on_change of the password field: compare once per entry, unless the session must wait."""
    entered = st.session_state.get(PASSWORD_KEY, "")
    st.session_state[PASSWORD_KEY] = ""  # a wrong entry is not re-checked on the next rerun
    throttle = password_throttle(client_key())
    now = time.monotonic()
    if not entered or throttle.wait_s(now):
        return
    granted = login_config().role_for_password(entered)
    if granted is not None:
        st.session_state[ROLE_KEY] = granted
        st.session_state[LOGIN_KEY] = "password"
    else:
        throttle.record_failure(now)
        st.session_state["password_wrong"] = True


def _oidc_role(config: LoginConfig) -> Role | None:
    """The role of a Streamlit OIDC login, or None (then the page offers the login button)."""
    if not config.oidc or not st.user.is_logged_in:
        return None
    granted = config.role_for_email(st.user.get("email"))
    if granted is None:
        st.error("Your e-mail address is not on this deployment's lists of owners, coauthors or "
                 "reviewers. Ask the study owner to add it.")
        st.button("Log out", on_click=st.logout)
        st.stop()
    return granted


def _logged_in(config: LoginConfig) -> bool:
    if config.is_open:
        st.session_state[ROLE_KEY] = Role.OWNER
        return True
    if ROLE_KEY in st.session_state:
        return True
    granted = _oidc_role(config)
    if granted is not None:
        st.session_state[ROLE_KEY], st.session_state[LOGIN_KEY] = granted, "oidc"
        return True
    if config.oidc:
        st.button("Log in", type="primary", on_click=st.login)
    if config.passwords or config.legacy_password:
        st.text_input("Password", type="password", key=PASSWORD_KEY, on_change=_check_password)
    wait = password_throttle(client_key()).wait_s(time.monotonic())
    if wait:
        st.error(f"Too many wrong passwords; try again in {math.ceil(wait):,} s.")
    elif st.session_state.pop("password_wrong", False):
        st.error("Wrong password. Ask the study owner for your password.")
    return False


def _log_out() -> None:
    for key in (ROLE_KEY, LOGIN_KEY, STUDY_KEY):
        st.session_state.pop(key, None)
    if st.user.is_logged_in:
        st.logout()


def _sidebar_login(config: LoginConfig) -> None:
    for problem in config.problems:
        st.sidebar.error(f"secrets.toml: {plain(problem)}")
    if config.is_open:
        st.sidebar.caption("Open access: no login is configured, so whoever reaches this address "
                           "acts as owner. Set passwords in .streamlit/secrets.toml to share it.")
        return
    st.sidebar.caption(f"Signed in as **{plain(role().value)}**.")
    st.sidebar.button("Log out", on_click=_log_out, key="log_out")


def _scoped(studies: list[Study], config: LoginConfig) -> list[Study]:
    """The studies this login may open; stops the page when the address asks for another."""
    scope = config.scope_of(role())
    if scope is None:
        return studies
    allowed_studies = [s for s in studies if s.name == scope]
    if not allowed_studies:
        st.error(f"This login opens the study \"{plain(scope)}\", which does not exist here.")
        st.stop()
    asked = st.query_params.get(STUDY_PARAM)
    if asked not in (None, str(allowed_studies[0].id)):
        st.error(f"This login opens the study \"{plain(scope)}\" only.")
        st.stop()
    return allowed_studies


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


def _unknown_study_in_address(ids: list[int]) -> str | None:
    """The address's ``?study=`` value when it names no study here (a stale or foreign link)."""
    if st.session_state.get(STUDY_KEY) in ids:
        return None
    named = st.query_params.get(STUDY_PARAM, "")
    return named if named and named not in {str(i) for i in ids} else None


def page_setup(title: str, *, needs_study: bool = True) -> tuple[sessionmaker[Session], int | None]:
    """Configure the page, gate it, and return the session factory and selected study id.

    Pages that need a study stop with a hint when none exists yet.
    """
    st.set_page_config(page_title=f"{title} · FaceAgree", page_icon="🙂", layout="wide")
    config = login_config()
    if not _logged_in(config):
        st.stop()
    _sidebar_login(config)
    factory = sessions()
    with factory() as session:
        all_studies = _scoped(list_studies(session), config)
    studies = {s.id: s.name for s in all_studies}
    demo_ids = {s.id for s in all_studies if s.is_demo}
    study_id = unknown = None
    if studies:
        ids = list(studies)
        unknown = _unknown_study_in_address(ids)
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
    if unknown is not None:
        st.warning(f"The link names study {plain(unknown)}, which does not exist here (deleted, or a "
                   f"link from another installation); showing {plain(studies[study_id])} instead.")
    if needs_study and study_id is None:
        st.info("No study yet. Create one or load the demo study on the Home page.")
        st.stop()
    return factory, study_id
