"""The app and a browser for the Chromium tests and bench/bench_browser.py: ``streamlit run
app.py`` on a free loopback port with its own data folder, and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 1000}
HEALTHY_WITHIN_S = 60


@dataclass(frozen=True)
class RunningApp:
    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(data_dir: Path) -> dict[str, str]:
    """This environment with the app's data folder and SQLite file under ``data_dir``."""
    return {**os.environ, "FACEAGREE_DATA_DIR": str(data_dir),
            "FACEAGREE_DB_URL": f"sqlite:///{data_dir / 'app.sqlite'}"}


@contextmanager
def running_app(data_dir: Path, extra_args: Sequence[str] = ()) -> Iterator[RunningApp]:
    """The app serving ``data_dir`` until the block ends; ``extra_args`` go to `streamlit run`."""
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port := free_port()), *extra_args],
        cwd=ROOT, env=app_env(data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url)
        yield RunningApp(url, server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a script still running after a failed step
            server.kill()
            server.wait()


def _wait_until_healthy(url: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not become healthy within {HEALTHY_WITHIN_S} s")


def launch_chromium(playwright):
    """Headless Debian Chromium (no Playwright browser download); the caller closes it."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def choose(page, label: str, option: str) -> None:
    """Pick in a Streamlit selectbox (a react-aria combobox, not BaseWeb): open it by its label,
    click the option, and check the box shows it. A click that lands while the page is still
    laying out or rerunning may not open the list or may be lost, so try again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect

    box = page.get_by_role("combobox", name=label).first
    for _ in range(5):
        box.click()
        try:
            page.get_by_role("option", name=option).first.click(timeout=3_000)
            expect(box).to_have_value(option, timeout=5_000)
            return
        except (AssertionError, PlaywrightTimeout):
            pass
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    raise AssertionError(f"could not choose {option!r} in {label!r}")


DEMO_STIMULI = ("neutral_01.png", "happiness_01.png", "sadness_01.png", "surprise_01.png")


def write_demo_ratings(path: Path, rater_prefix: str) -> Path:
    """A long rating file: three raters (``rater_prefix`` + 1..3) on four demo stimuli, valence
    and arousal on 1..9 (12 rows)."""
    rows = [f"{rater_prefix}{rater},{name},{(rater + index) % 9 + 1},{(rater * index) % 9 + 1}"
            for rater in range(1, 4) for index, name in enumerate(DEMO_STIMULI)]
    path.write_text("participant,image,valence,arousal\n" + "\n".join(rows) + "\n")
    return path


def fill_rating_wizard(page, ratings: Path) -> None:
    """Upload a :func:`write_demo_ratings` file in the open Ratings wizard and pick SAM 1-9 for
    both columns, until the wizard finds every row valid."""
    page.locator("input[type=file]").first.set_input_files(str(ratings))
    page.get_by_text("12 data rows, 4 columns").wait_for()
    choose(page, "valence scale", "SAM 1-9 (1..9)")
    page.get_by_role("combobox", name="arousal scale").wait_for()
    choose(page, "arousal scale", "SAM 1-9 (1..9)")
    page.get_by_text("Every row is valid.").wait_for()
