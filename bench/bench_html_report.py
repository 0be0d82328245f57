"""Size and render time of the static HTML report (``python -m core report --html``).

Run: ``python bench/bench_html_report.py [--stimuli 2000 --raters 10 --models 3 --boot 200]``
(synthetic study), or ``--demo`` for the demo study. With Chromium at /usr/bin/chromium and
Playwright installed it also opens the file offline and times until every chart is drawn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.access import Role
from core.agreement.report import TABLES, build_report  # noqa: E402
from core.agreement.synthetic import synthetic_study  # noqa: E402
from core.reporting.html_report import render_html, report_figures  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def demo_frames():
    from core.workflows.catalog import describe_models
    from core.workflows.demo import load_demo
    from db.analysis import load_predictions, load_ratings, load_stimuli
    from db.engine import make_engine, make_sessionmaker

    folder = Path(tempfile.mkdtemp())
    factory = make_sessionmaker(make_engine(f"sqlite:///{folder / 'demo.sqlite'}"))
    with factory.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
    with factory() as session:
        return (load_ratings(session, study_id), load_predictions(session, study_id),
                load_stimuli(session, study_id), describe_models(session))


def render_seconds(path: Path, expected: int) -> float | None:
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        started = time.monotonic()
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('div.chart svg').length >= {expected}",
                               timeout=600_000)
        seconds = time.monotonic() - started
        browser.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", action="store_true", help="the demo study instead of a synthetic one")
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--raters", type=int, default=10)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "faceagree_report.html")
    args = parser.parse_args(argv)
    if args.demo:
        ratings, predictions, stimuli, models = demo_frames()
    else:
        ratings, predictions, stimuli, models = synthetic_study(args.stimuli, args.raters, args.models)
    tables = build_report(ratings, predictions, stimuli, models, n_boot=args.boot)
    started = time.monotonic()
    figures = report_figures(tables, predictions)
    page = render_html(tables, figures, title="bench", manifest={"stimuli": int(stimuli.shape[0])},
                       descriptions=TABLES)
    args.out.write_text(page, encoding="utf-8")
    written = time.monotonic() - started
    print(f"{stimuli.shape[0]} stimuli, {len(figures)} figures: {args.out.stat().st_size / 1e6:.2f} MB "
          f"written in {written:.1f} s -> {args.out}")
    seconds = render_seconds(args.out, len(figures))
    if seconds is not None:
        print(f"Chromium drew all {len(figures)} charts in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
