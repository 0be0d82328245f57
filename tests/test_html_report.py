"""The static HTML report: every table and figure, no external references, hostile text escaped,
and (browser) the figures render offline in Chromium without console errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from core.access import Role
from core.__main__ import main
from core.agreement.report import TABLES, build_report
from core.reporting import charts
from core.reporting.html_report import Figure, render_html, report_figures
from core.workflows.catalog import describe_models
from core.workflows.demo import DEMO_NAME, load_demo
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.engine import DATA_DIR_ENV, make_engine, make_sessionmaker

CHROMIUM = "/usr/bin/chromium"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
HOSTILE = '<script>alert("x")</script><img src=http://evil.example/a.png>'


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo study's report tables, figures and HTML file."""
    folder = tmp_path_factory.mktemp("html")
    url = f"sqlite:///{folder / 'demo.sqlite'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(folder))
        factory = make_sessionmaker(make_engine(url))
        with factory.begin() as session:
            study_id = load_demo(session, actor=Role.OPERATOR)
        with factory() as session:
            frames = (load_ratings(session, study_id), load_predictions(session, study_id),
                      load_stimuli(session, study_id), describe_models(session))
    tables = build_report(*frames, n_boot=50)
    figures = report_figures(tables, frames[1])
    page = render_html(tables, figures, title="Demo report", manifest={"study": DEMO_NAME},
                       descriptions=TABLES)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return {"tables": tables, "figures": figures, "page": page, "path": path, "url": url,
            "folder": folder, "frames": frames}


def test_every_table_and_figure_is_in_the_page(demo):
    page = demo["page"]
    for name in demo["tables"]:
        assert f"<h3>{name}</h3>" in page
    assert page.count('<div class="chart"') == len(demo["figures"]) >= 10
    sections = {figure.section for figure in demo["figures"]}
    assert sections == {"Agreement", "Across pipelines", "Confusion", "Circumplex", "Model diversity"}
    assert "human_median" in page  # the human ceiling beside the model rows
    assert "<dt>Krippendorff&#x27;s alpha</dt>" in page and '"study": ' in page.replace("&quot;", '"')


def test_figures_with_nothing_to_draw_are_left_out(demo):
    """Labels only (a vote study): no circumplex, no valence or arousal figure of NaN estimates."""
    ratings, predictions, stimuli, models = demo["frames"]
    no_affect = {"valence": float("nan"), "arousal": float("nan")}
    predictions = predictions.assign(**no_affect)
    tables = build_report(ratings.assign(**no_affect), predictions, stimuli, models, n_boot=0)
    names = [figure.name for figure in report_figures(tables, predictions)]
    assert "confusion_demo-model-a_human_majority" in names and "model_vs_model_emotion" in names
    assert [name for name in names if re.search("circumplex|valence|arousal", name)] == []
    everything = [figure.name for figure in demo["figures"]]
    assert "circumplex_humans" in everything and "model_vs_model_valence" in everything


def test_the_page_references_nothing_outside_itself(demo):
    assert EXTERNAL.findall(demo["page"]) == []
    assert "vegaEmbed(" in demo["page"]  # the library is inlined, not fetched


def test_a_new_table_appears_without_changes(demo):
    tables = {**demo["tables"], "rater_planning": pd.DataFrame({"raters": [5, 10], "estimate": [0.6, 0.7]})}
    page = render_html(tables, [], title="t", manifest={})
    assert "<h3>rater_planning</h3>" in page and "Other tables" in page


def test_user_text_is_escaped_in_tables_titles_and_chart_data(demo):
    consensus = demo["tables"]["consensus"].copy()
    consensus["stimulus"] = HOSTILE
    table = pd.DataFrame({"note": [HOSTILE], HOSTILE: ["x"]})
    figure = Figure("hostile", "Circumplex", HOSTILE, charts.circumplex_chart(consensus))
    page = render_html({"notes": table}, [figure], title=HOSTILE, manifest={"study": HOSTILE})
    assert "alert" in page and HOSTILE not in page
    assert "<script>alert" not in page and "<img src=http" not in page
    assert page.count("<script") == page.count("</script>") == 3  # spec, library, embed loop


def test_cli_report_writes_the_html_file(demo, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(demo["folder"]))
        code = main(["--db", demo["url"], "report", "--study", DEMO_NAME, "--out", str(tmp_path),
                     "--boot", "0", "--no-figures", "--html"])
    assert code == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and f"FaceAgree report: {DEMO_NAME}" in page
    assert '"n_ratings"' in page.replace("&quot;", '"')


@pytest.mark.browser
@pytest.mark.slow
def test_the_report_renders_offline_in_chromium(demo, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    errors: list[str] = []
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route(re.compile(r"^https?://"), lambda route: (errors.append(route.request.url), route.abort()))
        started = time.monotonic()
        page.goto(demo["path"].as_uri())
        expected = len(demo["figures"])
        page.wait_for_function(f"document.querySelectorAll('div.chart svg').length >= {expected}",
                               timeout=120_000)
        seconds = time.monotonic() - started
        rendered = page.locator("div.chart svg").count()
        page.screenshot(path=str(artifacts / "report_top.png"))
        page.locator("#model-diversity").screenshot(path=str(artifacts / "model_diversity.png"))
        page.screenshot(path=str(artifacts / "report_full.png"), full_page=True)
        browser.close()
    print(f"rendered {rendered} charts in {seconds:.1f} s; screenshots in {artifacts}")
    assert rendered == expected and errors == []
    assert all((artifacts / name).stat().st_size > 10_000 for name in ("report_top.png", "report_full.png"))
