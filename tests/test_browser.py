"""Main flow in a real browser: Chromium (Debian package) driven by Playwright against
``streamlit run app.py`` on a free loopback port with a fresh SQLite file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("browser-data")
    port = _free_port()
    env = {**os.environ, "FACEAGREE_DATA_DIR": str(data),
           "FACEAGREE_DB_URL": f"sqlite:///{data / 'app.sqlite'}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("streamlit did not become healthy within 60 s")
    yield url
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture(scope="module")
def page(app_url: str):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
    page.get_by_text("Synthetic demo study").first.wait_for()
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
