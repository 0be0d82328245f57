"""Main flow in a real browser: Chromium (Debian package) driven by Playwright against
``streamlit run app.py`` on a free loopback port with a fresh SQLite file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_app import (CHROMIUM, VIEWPORT, fill_rating_wizard, launch_chromium, running_app,
                               write_demo_ratings)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The sidebar note shown once the demo study exists ("Loading the synthetic demo study…" would
# match a looser text while it is still being built).
DEMO_LOADED = "generated faces, ratings and model outputs"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("browser-data")) as app:
        yield app.url


@pytest.fixture(scope="module")
def page(app_url: str):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _shot(page, name: str) -> None:
    """Keep a screenshot of each step for a person to look at (under the pytest tmp folder)."""
    folder = Path(os.environ.get("FACEAGREE_SCREENSHOTS", "/tmp/faceagree-screens"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_main_flow_demo_upload_and_agreement(page, app_url: str, tmp_path: Path) -> None:
    from skimage import data as skdata
    from PIL import Image

    page.goto(app_url)
    page.get_by_role("button", name="Load demo study").click()
    page.get_by_text(DEMO_LOADED).wait_for(timeout=180_000)
    _shot(page, "1-home")

    page.goto(f"{app_url}/Stimuli")
    page.get_by_role("tab", name="Upload images").click()
    photo = tmp_path / "astronaut_upload.png"
    Image.fromarray(skdata.astronaut()).resize((200, 200)).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    page.locator("input[type=file]").first.set_input_files([str(photo), str(broken)])
    page.get_by_role("button", name="Import images").click()
    page.get_by_text("astronaut_upload.png").first.wait_for()
    page.get_by_text("broken.jpg").first.wait_for()
    _shot(page, "2-stimuli-upload")

    page.goto(f"{app_url}/Ratings")
    page.get_by_role("tab", name="Batches").click()
    page.get_by_text("demo_ratings_long.csv", exact=False).first.wait_for()
    _shot(page, "3-ratings")

    page.goto(f"{app_url}/Agreement")
    page.get_by_text("Leave-one-rater-out").first.wait_for(timeout=180_000)
    page.locator(".vega-embed canvas, .vega-embed svg.marks").first.wait_for(timeout=120_000)
    assert page.get_by_role("button", name="CSV").count() + page.get_by_text("CSV").count() > 0
    _shot(page, "4-agreement")

    page.goto(f"{app_url}/Circumplex")
    page.locator(".vega-embed canvas, .vega-embed svg.marks").first.wait_for(timeout=120_000)
    page.wait_for_timeout(1000)
    _shot(page, "5-circumplex")


def test_ratings_upload_wizard(page, app_url: str, tmp_path: Path) -> None:
    """A long rating file for the demo study's stimuli: columns detected, both scales chosen in
    their dropdowns, confirmed, and listed as a new batch."""
    ratings = write_demo_ratings(tmp_path / "browser_wizard_ratings.csv", rater_prefix="B")

    page.goto(app_url)
    no_study = page.get_by_text("load the demo study to begin")
    page.get_by_text("What to do next").or_(no_study).first.wait_for()  # the Home page's end
    if not no_study.is_visible():  # the Demo section is folded once a study exists
        page.get_by_text("Demo", exact=True).click()
    page.get_by_role("button", name="Load demo study").click()  # returns an existing demo
    page.get_by_text(DEMO_LOADED).wait_for(timeout=180_000)
    # A fresh page load, not a sidebar click that can land while the Home page still reruns.
    page.goto(f"{app_url}/Ratings")
    page.get_by_role("tab", name="Upload ratings").wait_for()
    fill_rating_wizard(page, ratings)
    _shot(page, "6-ratings-wizard")
    page.get_by_role("button", name="Import 12 ratings").click()
    page.get_by_text("browser_wizard_ratings.csv: batch #").wait_for()
    page.get_by_role("tab", name="Batches").click()
    batches = page.get_by_role("tabpanel", name="Batches")
    batches.get_by_text("12 ratings, 3 raters, 4 stimuli").wait_for()
    assert batches.get_by_text("browser_wizard_ratings.csv").count() == 1
    _shot(page, "7-ratings-batches")
