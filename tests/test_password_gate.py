"""AppTest for the password gate in ui/chrome.py with the legacy single ``password`` secret.

The password comes from ``at.secrets`` as it would from ``.streamlit/secrets.toml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.access import Role
from ui.chrome import FREE_TRIES, PASSWORD_KEY, ROLE_KEY, THROTTLE_KEY

HOME = str(Path(__file__).resolve().parents[1] / "app.py")
KOREAN_PASSWORD = "얼굴감정-2026"


def gated_home(password: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60)
    at.secrets["password"] = password
    return at.run()


def enter(at: AppTest, password: str) -> AppTest:
    return at.text_input(key=PASSWORD_KEY).input(password).run()


def logged_in(at: AppTest) -> bool:
    """The legacy single password logs in as a coauthor."""
    return ROLE_KEY in at.session_state and at.session_state[ROLE_KEY] is Role.COAUTHOR


def test_the_gate_stops_the_page_before_the_password(data_dir: Path) -> None:
    at = gated_home("secret")
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.button  # nothing of the Home page is rendered


def test_a_korean_password_logs_in(data_dir: Path) -> None:
    at = enter(gated_home(KOREAN_PASSWORD), KOREAN_PASSWORD)
    assert not at.exception
    assert logged_in(at)
    assert "Password" not in [t.label for t in at.text_input]


def test_a_wrong_password_is_refused_with_a_message(data_dir: Path) -> None:
    at = enter(gated_home(KOREAN_PASSWORD), "얼굴감정")
    assert not logged_in(at)
    assert "Wrong password" in at.error[0].value


def test_after_many_wrong_passwords_the_right_one_waits_for_the_lockout(data_dir: Path) -> None:
    at = gated_home("right")
    for attempt in range(100):
        at = enter(at, f"wrong-{attempt}")
    # Tries during a wait are not even compared; each checked one doubles the next wait.
    assert FREE_TRIES <= at.session_state[THROTTLE_KEY].failures < 10
    at = enter(at, "right")
    assert not logged_in(at)
    assert at.error[0].value.startswith("Too many wrong passwords; try again in")

    at.session_state[THROTTLE_KEY].locked_until = 0.0  # the wait is over
    at = enter(at, "right")
    assert logged_in(at)


@pytest.mark.parametrize("tries, locked", [(FREE_TRIES - 1, False), (FREE_TRIES, True)])
def test_the_lockout_starts_after_the_free_tries(data_dir: Path, tries: int, locked: bool) -> None:
    at = gated_home("right")
    for attempt in range(tries):
        at = enter(at, f"wrong-{attempt}")
    at = enter(at, "right")
    assert logged_in(at) is not locked
