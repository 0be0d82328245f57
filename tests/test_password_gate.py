"""AppTest for the password gate in ui/chrome.py with the legacy single ``password`` secret.

The password comes from ``at.secrets`` as it would from ``.streamlit/secrets.toml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.access import Role
from ui import chrome
from ui.chrome import FREE_TRIES, PASSWORD_KEY, ROLE_KEY

HOME = str(Path(__file__).resolve().parents[1] / "app.py")
KOREAN_PASSWORD = "얼굴감정-2026"


@pytest.fixture(autouse=True)
def no_earlier_guesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts as a client the server has not seen guessing."""
    monkeypatch.setattr(chrome, "_THROTTLES", {})


def local_throttle() -> chrome.PasswordThrottle:
    return chrome.password_throttle("local")  # AppTest connects as localhost, without headers


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
    assert FREE_TRIES <= local_throttle().failures < 10
    at = enter(at, "right")
    assert not logged_in(at)
    assert at.error[0].value.startswith("Too many wrong passwords; try again in")

    local_throttle().locked_until = 0.0  # the wait is over
    at = enter(at, "right")
    assert logged_in(at)


@pytest.mark.parametrize("tries, locked", [(FREE_TRIES - 1, False), (FREE_TRIES, True)])
def test_the_lockout_starts_after_the_free_tries(data_dir: Path, tries: int, locked: bool) -> None:
    at = gated_home("right")
    for attempt in range(tries):
        at = enter(at, f"wrong-{attempt}")
    at = enter(at, "right")
    assert logged_in(at) is not locked


def test_a_reload_does_not_reset_the_lockout(data_dir: Path) -> None:
    """The wait belongs to the client, not to its browser session: a new session (a reload, a
    new tab) still waits, and another client does not."""
    at = gated_home("right")
    for attempt in range(FREE_TRIES):
        at = enter(at, f"wrong-{attempt}")
    reloaded = enter(gated_home("right"), "right")
    assert not logged_in(reloaded)
    assert reloaded.error[0].value.startswith("Too many wrong passwords; try again in")
    assert chrome.password_throttle("203.0.113.7").wait_s(0.0) == 0.0
