"""Roles in a real browser: Chromium (Debian package) driven by Playwright against
``streamlit run app.py`` with per-role password hashes in a temporary secrets file.

The coauthor uploads a rating batch through the Ratings wizard; the reviewer, scoped to the demo
study, gets no upload widget, no toolbar, no other study by ``?study=``, and never receives the
bytes of an original face image or its unblurred thumbnail while the study hides faces.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.io.images import BLURRED_SIDE
from tests.browser_app import (ROOT, VIEWPORT, app_env, fill_rating_wizard, running_app,
                               write_demo_ratings)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_STUDY = "Demo (synthetic)"
OTHER_STUDY = "Other study"
PASSWORDS = {"coauthor": "coauthor-pass-1", "reviewer": "reviewer-pass-1"}
HIDDEN_NOTE = "Face images are hidden from reviewers in this study"
DEMO_STIMULI = 25


@dataclass(frozen=True)
class Deployment:
    data: Path
    secrets: Path
    env: dict[str, str]

    def stimulus_hashes(self, study: str) -> tuple[set[str], set[str]]:
        """sha256 of each stored original (re-hashed from the blob files) and stored thumbnail."""
        with sqlite3.connect(self.data / "app.sqlite") as db:
            rows = db.execute(
                "SELECT s.sha256, s.thumbnail FROM stimulus s JOIN study t ON t.id = s.study_id "
                "WHERE t.name = ?", (study,)).fetchall()
        originals = {_sha256((self.data / "blobs" / sha[:2] / sha).read_bytes()) for sha, _ in rows}
        return originals, {_sha256(thumbnail) for _, thumbnail in rows}

    def study_id(self, name: str) -> int:
        with sqlite3.connect(self.data / "app.sqlite") as db:
            (found,) = db.execute("SELECT id FROM study WHERE name = ?", (name,)).fetchone()
        return found

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=self.env,
                              input=stdin, capture_output=True, text=True, timeout=300, check=True)
        return done.stdout


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The demo study and a second study made by the CLI; hashes from `core hash-password`."""
    from PIL import Image

    data = tmp_path_factory.mktemp("roles-data")
    setup = Deployment(data, data / "secrets.toml", app_env(data))
    setup.cli("demo")
    faces = tmp_path_factory.mktemp("other-faces")
    for shade in (60, 180):
        Image.new("RGB", (120, 120), (shade, 90, 200 - shade)).save(faces / f"other_{shade}.png")
    setup.cli("import-stimuli", "--study", OTHER_STUDY, "--create", str(faces))
    hashes = {role: setup.cli("hash-password", "--stdin", stdin=password + "\n").strip().splitlines()[-1]
              for role, password in PASSWORDS.items()}
    setup.secrets.write_text(
        "[passwords]\n" + "".join(f'{role} = "{hashed}"\n' for role, hashed in hashes.items())
        + f'[study_scope]\nreviewer = "{DEMO_STUDY}"\n')
    return setup


@pytest.fixture(scope="module")
def app_url(deployment: Deployment) -> Iterator[str]:
    """The app with the temporary secrets file (`secrets.files`), never the repository's."""
    with running_app(deployment.data, ["--secrets.files", str(deployment.secrets)]) as app:
        yield app.url


@pytest.fixture
def page(browser):
    """A fresh browser context per test: no session or cookie carries from one role to another."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


class MediaLog:
    """Every response from Streamlit's media endpoint (``/media/...``, not ``/static/media``)."""

    def __init__(self, page, app_url: str) -> None:
        self.prefix = f"{app_url}/media/"
        self.responses = []
        page.on("response", self._seen)

    def _seen(self, response) -> None:
        if response.url.startswith(self.prefix):
            self.responses.append(response)

    def bodies(self) -> dict[str, bytes]:
        return {response.url: response.body() for response in self.responses if response.ok}


def _log_in(page, url: str, role: str) -> None:
    """Open ``url`` (a fresh Streamlit session) and type the role's password."""
    page.goto(url)
    page.get_by_label("Password", exact=True).fill(PASSWORDS[role])
    page.keyboard.press("Enter")
    page.get_by_text(f"Signed in as {role}.").wait_for()


def _wait_for_images(page, count: int) -> None:
    """Until ``count`` pictures of the page's st.image elements have finished loading."""
    page.wait_for_function(
        "n => { const images = [...document.querySelectorAll('[data-testid=stImage] img')];"
        " return images.length >= n && images.every(i => i.complete && i.naturalWidth > 0); }",
        arg=count)


def _shot(page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_coauthor_uploads_a_rating_batch(page, app_url: str, tmp_path: Path) -> None:
    ratings = write_demo_ratings(tmp_path / "coauthor_ratings.csv", rater_prefix="C")

    _log_in(page, f"{app_url}/Ratings", "coauthor")
    page.get_by_role("tab", name="Upload ratings").click()
    fill_rating_wizard(page, ratings)
    _shot(page, tmp_path, "coauthor-1-ratings-wizard")
    page.get_by_role("button", name="Import 12 ratings").click()
    page.get_by_text("coauthor_ratings.csv: batch #").wait_for()
    page.get_by_role("tab", name="Batches").click()
    batches = page.get_by_role("tabpanel", name="Batches")
    batches.get_by_text("12 ratings, 3 raters, 4 stimuli").wait_for()
    assert batches.get_by_text("coauthor_ratings.csv").count() == 1
    _shot(page, tmp_path, "coauthor-2-ratings-batches")


def test_reviewer_sees_no_upload_and_no_toolbar(page, app_url: str, tmp_path: Path) -> None:
    _log_in(page, f"{app_url}/Ratings", "reviewer")
    page.get_by_text("demo_ratings_long.csv").first.wait_for()
    assert page.get_by_role("tab", name="Upload ratings").count() == 0
    assert page.locator("input[type=file]").count() == 0
    # client.toolbarMode = "minimal" with nothing set by a host: no menu and no Deploy button.
    assert page.get_by_test_id("stMainMenu").count() == 0
    assert page.get_by_test_id("stAppDeployButton").count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
    _shot(page, tmp_path, "reviewer-1-ratings")

    _log_in(page, f"{app_url}/Stimuli", "reviewer")
    page.get_by_text(f"{DEMO_STIMULI} stimuli match.").wait_for()
    assert page.get_by_role("tab").all_inner_texts() == ["Gallery"]
    assert page.locator("input[type=file]").count() == 0
    _shot(page, tmp_path, "reviewer-2-stimuli")


def test_reviewer_cannot_open_another_study(page, app_url: str, deployment: Deployment,
                                            tmp_path: Path) -> None:
    _log_in(page, f"{app_url}/Stimuli?study={deployment.study_id(OTHER_STUDY)}", "reviewer")
    page.get_by_text(f'This login opens the study "{DEMO_STUDY}" only.').wait_for()
    assert page.get_by_text("stimuli match").count() == 0
    assert page.get_by_text("other_60.png").count() == 0
    assert page.get_by_role("combobox", name="Study").count() == 0
    _shot(page, tmp_path, "reviewer-3-other-study-refused")


def test_reviewer_never_receives_face_images(page, app_url: str, deployment: Deployment,
                                             tmp_path: Path) -> None:
    from PIL import Image

    originals, thumbnails = deployment.stimulus_hashes(DEMO_STUDY)
    media = MediaLog(page, app_url)
    _log_in(page, f"{app_url}/Stimuli", "reviewer")
    page.get_by_text(HIDDEN_NOTE).wait_for()
    _wait_for_images(page, DEMO_STIMULI)
    page.get_by_role("button", name="Details").first.click()
    page.get_by_role("button", name="Close").wait_for()
    _wait_for_images(page, DEMO_STIMULI + 1)
    _shot(page, tmp_path, "reviewer-4-blurred-gallery-and-detail")

    served = media.bodies()
    assert len(served) >= DEMO_STIMULI  # the gallery does show something: one picture per face
    faces = originals | thumbnails
    assert [url for url, body in served.items() if _sha256(body) in faces] == []
    for url, body in served.items():
        with Image.open(io.BytesIO(body)) as picture:
            assert max(picture.size) <= BLURRED_SIDE, f"{url} is {picture.size}, not a blurred thumbnail"


def test_reviewer_gets_thumbnails_once_the_owner_allows_faces(
        page, app_url: str, deployment: Deployment, tmp_path: Path) -> None:
    """The same check fails when faces are shown: the media log does see real face bytes."""
    _, thumbnails = deployment.stimulus_hashes(DEMO_STUDY)
    deployment.cli("study-settings", "--study", DEMO_STUDY, "--reviewers-see-faces", "yes")
    try:
        media = MediaLog(page, app_url)
        _log_in(page, f"{app_url}/Stimuli", "reviewer")
        page.get_by_text(f"{DEMO_STIMULI} stimuli match.").wait_for()
        _wait_for_images(page, DEMO_STIMULI)
        assert page.get_by_text(HIDDEN_NOTE).count() == 0
        _shot(page, tmp_path, "reviewer-5-faces-allowed")
        served = {_sha256(body) for body in media.bodies().values()}
        assert len(served & thumbnails) == DEMO_STIMULI
    finally:
        deployment.cli("study-settings", "--study", DEMO_STUDY, "--reviewers-see-faces", "no")
