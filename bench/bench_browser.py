"""First-render timings in a real browser (issue 10, item 4): Chromium driven by Playwright
against ``streamlit run app.py`` with the demo study in a fresh data folder.

Measures, each from the navigation or click to the element a user waits for:
  home        Home page interactive (its last section, "What to do next", drawn)
  agreement   first Agreement view of the demo study: first content, then the first chart drawn
  wizard      a Ratings wizard rerun (choosing a scale until the validation answer shows)
  idle_cpu    CPU of the server process over 30 s with the page open and nobody clicking
Targets on a quiet 2-core machine: home < 3 s, agreement < 4 s, wizard < 1 s, idle < 2 % of a core.

    python bench/bench_browser.py [--idle-s 30] [--runs 3]

Needs /usr/bin/chromium (Debian package) and the playwright package (no browser download).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.ratings.scales import PRESETS  # noqa: E402  (after the path: run as a script)
CHROMIUM = "/usr/bin/chromium"
CHART = ".vega-embed canvas, .vega-embed svg.marks"
TARGETS = {"home_s": 3.0, "agreement_chart_s": 4.0, "wizard_rerun_s": 1.0, "idle_cpu_percent": 2.0}
STIMULI = ["neutral_01.png", "happiness_01.png", "sadness_01.png", "surprise_01.png"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "FACEAGREE_DATA_DIR": str(data), "FACEAGREE_DB_URL": f"sqlite:///{data / 'app.sqlite'}"}
    subprocess.run([sys.executable, "-m", "core", "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("streamlit did not become healthy within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(action, wait) -> float:
    start = time.perf_counter()
    action()
    wait()
    return time.perf_counter() - start


def measure_home(page, url: str) -> float:
    return timed(lambda: page.goto(url), lambda: page.get_by_text("What to do next").wait_for())


def measure_agreement(page, url: str) -> tuple[float, float, bool]:
    """Seconds to the first content and to the first chart, and whether the report was ready on
    arrival (computed ahead while Home was open: no "Computing agreement statistics" box)."""
    start = time.perf_counter()
    page.goto(f"{url}/Agreement")
    page.get_by_role("heading", name="Agreement").first.wait_for()
    first_content = time.perf_counter() - start
    page.locator(CHART).first.wait_for(timeout=300_000)
    chart = time.perf_counter() - start
    return first_content, chart, page.get_by_text("Agreement statistics ready").count() == 0


def rating_file(folder: Path) -> Path:
    rows = [f"B{rater},{name},{(rater + index) % 9 + 1}"
            for rater in range(1, 4) for index, name in enumerate(STIMULI)]
    path = folder / "bench_ratings.csv"
    path.write_text("participant,image,valence\n" + "\n".join(rows) + "\n")
    return path


def open_list(page, label: str, option: str):
    """Open a selectbox until ``option`` shows (a click during a rerun may not open it); the
    option's locator, so that only the choice itself is timed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    choice = page.get_by_role("option", name=option, exact=True).first
    for _ in range(5):
        page.get_by_role("combobox", name=label).first.click()
        try:
            choice.wait_for(timeout=3_000)
            return choice
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise SystemExit(f"the {label} list did not open")


def measure_wizard(page, url: str, ratings: Path) -> list[float]:
    """Upload once, then time reruns: each picks a valence scale until the answer shows."""
    page.goto(f"{url}/Ratings")
    page.get_by_role("tab", name="Upload ratings").wait_for()
    page.locator("input[type=file]").first.set_input_files(str(ratings))
    page.get_by_text("12 data rows, 3 columns").wait_for()
    times = []
    valid, too_narrow = PRESETS["sam9"].label, PRESETS["likert5"].label  # the file has values 2..7
    for option, answer in [(valid, "Every row is valid."), (too_narrow, "Problems found"),
                           (valid, "Every row is valid.")]:
        choice = open_list(page, "valence scale", option)
        times.append(timed(choice.click, lambda: page.get_by_text(answer).first.wait_for()))
        page.wait_for_timeout(500)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3, help="Home loads to time (median reported)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit("needs the Debian chromium package (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(Path(folder))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                home = [measure_home(page, url) for _ in range(args.runs)]
                first_content, chart, ready = measure_agreement(page, url)
                wizard = measure_wizard(page, url, rating_file(Path(folder)))
                page.goto(url)
                page.get_by_text("What to do next").wait_for()
                before = cpu_seconds(server.pid)
                time.sleep(args.idle_s)
                idle = 100 * (cpu_seconds(server.pid) - before) / args.idle_s
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    results = {
        "home_s": statistics.median(home), "home_first_load_s": home[0],
        "agreement_first_content_s": first_content, "agreement_chart_s": chart,
        "wizard_rerun_s": statistics.median(wizard), "idle_cpu_percent": idle,
    }
    print(f"{'measure':28} {'value':>8}  target")
    for name, value in results.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"< {target:g} ({'met' if value < target else 'MISSED'})"
        print(f"{name:28} {value:8.2f}  {verdict}")
    print(f"{'agreement_ready_on_arrival':28} {'yes' if ready else 'no':>8}  (report computed ahead)")
    print(f"load average after the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
