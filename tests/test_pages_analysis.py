"""AppTest runs of the four analysis pages on seeded SQLite databases.

Two studies: ratings only (reliability first, models absent message) and one with predictions
of three simulated models written straight into the database (the third has seven classes).
Charts are checked through the Vega-Lite spec each page sends to the browser.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from sqlalchemy import insert, select

from core.access import Role
from core.agreement.report import build_report
from core.workflows.catalog import describe_models
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.models import Prediction, Rating, RatingBatch
from db.ratings import list_batches, set_excluded
from tests.analysis_seed import seed_study
from tests.markdown_text import shown
from ui import analysis_data as data
from ui.analysis_data import Filters, Settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = {name: str(ROOT / "pages" / f"{name}.py") for name in
         ("4_Agreement", "5_Confusion", "6_Circumplex", "7_Model_diversity")}
TIMEOUT = 120
FAST = Settings(n_boot=200)  # CIs are not under test here; keeps each first run short
NO_MODELS = "No model predictions for this study yet"


@pytest.fixture
def ratings_only(sessions) -> int:
    return seed_study(sessions, "ratings only", n_stimuli=24, n_raters=6, seed=3).study_id


@pytest.fixture
def with_models(sessions) -> int:
    return seed_study(sessions, "with models", n_stimuli=24, n_raters=6, n_models=3, seed=4).study_id


def run_page(page: str, study_id: int) -> AppTest:
    at = AppTest.from_file(PAGES[page], default_timeout=TIMEOUT)
    at.session_state["study_id"] = study_id
    at.session_state["analysis:settings"] = FAST
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at: AppTest) -> list[dict]:
    """The Vega-Lite specs of every chart on the page."""
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def chart_rows(at: AppTest, title_prefix: str) -> pd.DataFrame:
    """All data rows of the chart whose title starts with ``title_prefix`` (Streamlit ships
    inline data as Arrow datasets beside the spec)."""
    chart = next(c for c in at.get("vega_lite_chart") if str(json.loads(c.proto.spec).get("title", "")).startswith(title_prefix))
    return pd.concat([convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets], ignore_index=True)


def leaves(spec: dict) -> list[dict]:
    """The leaf views of a layered spec."""
    return [leaf for child in spec["layer"] for leaf in leaves(child)] if "layer" in spec else [spec]


def mark(view: dict) -> str:
    return view["mark"] if isinstance(view["mark"], str) else view["mark"]["type"]


def titles(at: AppTest) -> list[str]:
    return [spec.get("title", "") for spec in specs(at)]


def downloads(at: AppTest) -> list[str]:
    return [button.proto.label for button in at.get("download_button")]


def computed(at: AppTest) -> bool:
    """Whether this run computed the report (the status box appears only then)."""
    return any(status.label == "Agreement statistics ready" for status in at.get("status"))


def infos(at: AppTest) -> str:
    return " ".join(element.value for element in at.info)


def test_agreement_ratings_only_shows_reliability_first(ratings_only: int) -> None:
    at = run_page("4_Agreement", ratings_only)
    assert [tab.label for tab in at.tabs][:2] == ["Human ceiling", "Models vs humans"]
    metrics = {shown(m.label): float(m.value) for m in at.metric}
    assert {"Fleiss' kappa (labels)", "ICC(A,1) = ICC(2,1), valence", "ICC(A,1) = ICC(2,1), arousal"} <= set(metrics)
    assert all(-1 <= v <= 1 for v in metrics.values())
    assert NO_MODELS in infos(at)
    assert any(t.startswith("Human raters vs the others") for t in titles(at))
    labels = downloads(at)
    assert {"CSV", "XLSX", "LaTeX", "SVG", "PNG"} <= set(labels)
    assert any(label.startswith("All tables (XLSX") for label in labels)
    assert "24 stimuli, 6 raters, 144 ratings" in at.caption[0].value


def test_agreement_with_models_puts_ceiling_beside_models(with_models: int) -> None:
    at = run_page("4_Agreement", with_models)
    assert NO_MODELS not in infos(at)
    rows = chart_rows(at, "Models vs human ceiling")
    assert {"unknown · sim-model-1", "unknown · sim-model-2", "unknown · sim-model-3"} <= set(rows["label"])
    band = rows[rows["what"].astype(str).str.startswith("human raters")].iloc[0]
    assert band["ci_low"] <= band["estimate"] <= band["ci_high"]
    frames = [df.value for df in at.dataframe]
    continuous = next(f for f in frames if "human_median" in f.columns and "reference" in f.columns)
    assert set(continuous["model_id"]) == {"sim-model-1", "sim-model-2", "sim-model-3"}
    assert continuous["human_median"].notna().any()


def test_agreement_model_filter_recomputes_for_the_chosen_models(with_models: int) -> None:
    at = run_page("4_Agreement", with_models)
    models = next(m for m in at.multiselect if m.label == "Models")
    models.unselect("sim-model-2").run()
    assert not at.exception
    analysed = next(df.value for df in at.dataframe if "n_predictions" in df.value.columns)
    assert list(analysed["model_id"]) == ["sim-model-1", "sim-model-3"]


def test_rerender_uses_the_cache_and_new_data_invalidates_it(sessions, with_models: int) -> None:
    at = run_page("4_Agreement", with_models)
    assert computed(at)
    at.run()
    assert not computed(at)  # cache hit
    with sessions.begin() as session:
        set_excluded(session, min(b.id for b in list_batches(session, with_models)), True, actor=Role.OPERATOR)
    at.run()
    assert computed(at)
    assert "3 raters" in at.caption[0].value


def test_confusion_ratings_only_compares_humans_with_intended(ratings_only: int) -> None:
    at = run_page("5_Confusion", ratings_only)
    assert NO_MODELS in infos(at)
    assert at.selectbox[0].options == ["human majority (vs intended emotion)"]
    heatmap = specs(at)[0]
    assert heatmap["title"] == "human majority (vs intended emotion) vs intended emotion"
    assert leaves(heatmap)[1]["encoding"]["text"]["field"] == "count"


def test_confusion_seven_class_model_gets_a_note(with_models: int) -> None:
    at = run_page("5_Confusion", with_models)
    assert not at.warning  # 8-class model first
    at.selectbox[0].select("sim-model-3").run()
    assert "cannot output: contempt" in at.warning[0].value
    recall = next(s for s in specs(at) if s["title"].startswith("Recall per"))
    assert leaves(recall)[0]["encoding"]["xOffset"]["field"] == "model"
    at.radio[0].set_value("intended").run()
    assert not at.exception
    assert specs(at)[0]["title"].endswith("vs intended emotion")


def test_circumplex_humans_only_and_with_a_model(ratings_only: int, with_models: int) -> None:
    at = run_page("6_Circumplex", ratings_only)
    assert at.selectbox[0].options == ["humans only"]
    spec = specs(at)[0]
    assert spec["title"] == "Humans"
    at = run_page("6_Circumplex", with_models)
    assert at.selectbox[0].value == "sim-model-1"
    spec = specs(at)[0]
    views = leaves(spec)
    assert {"line", "circle", "point", "rule"} <= {mark(v) for v in views}
    triangles = next(v for v in views if mark(v) == "point" and v["mark"].get("shape") == "triangle-up")
    assert triangles["encoding"]["x"]["scale"]["domain"] == [-1.0, 1.0]
    at.selectbox[0].select("__all__").run()
    assert [p["name"] for p in specs(at)[0].get("params", [])].count("model") == 1


def test_model_diversity_heatmaps(ratings_only: int, with_models: int) -> None:
    at = run_page("7_Model_diversity", ratings_only)
    assert NO_MODELS in infos(at) and not specs(at)
    at = run_page("7_Model_diversity", with_models)
    assert titles(at) == ["CCC valence", "CCC arousal", "Cohen's kappa (labels)"]
    first = specs(at)[0]
    assert leaves(first)[0]["encoding"]["y"]["sort"] == [
        "human · human_consensus", "unknown · sim-model-1", "unknown · sim-model-2", "unknown · sim-model-3"
    ]


def test_analysis_version_tracks_every_input(sessions, with_models: int) -> None:
    """The cache fingerprint changes on exclusion, new predictions and metadata edits, and
    only then."""
    from db.models import Prediction, StimulusAttribute
    from db.versions import analysis_version

    def version() -> tuple:
        with sessions() as session:
            return analysis_version(session, with_models)

    seen = [version()]
    assert version() == seen[0]
    with sessions.begin() as session:
        set_excluded(session, min(b.id for b in list_batches(session, with_models)), True, actor=Role.OPERATOR)
    seen.append(version())
    with sessions.begin() as session:
        attribute = session.query(StimulusAttribute).first()
        attribute.value = attribute.value + " (edited)"
    seen.append(version())
    with sessions.begin() as session:
        old = session.query(Prediction).first()
        session.add(Prediction(stimulus_sha256=old.stimulus_sha256, model_id="late-model",
                               checkpoint_sha256="1" * 64, preprocessing="v1", detector="precropped",
                               status="ok", label="fear", probs={"fear": 1.0}, valence=0.0, arousal=0.0))
    seen.append(version())
    assert len(set(seen)) == len(seen)


def test_a_batch_added_while_the_page_is_open_is_included(sessions, with_models: int) -> None:
    """Issue 10 item 3: "all batches" means all, including one a coauthor adds later."""
    with sessions.begin() as session:
        later = max(b.id for b in list_batches(session, with_models))
        set_excluded(session, later, True, actor=Role.OPERATOR)
    at = run_page("4_Agreement", with_models)
    assert "3 raters" in at.caption[0].value
    with sessions.begin() as session:
        set_excluded(session, later, False, actor=Role.OPERATOR)  # back in the analysis, as a new upload would be
    at.run()
    assert "6 raters" in at.caption[0].value
    assert later in next(m for m in at.multiselect if m.label == "Rating batches").value


def test_a_narrowed_choice_announces_a_new_model(sessions, with_models: int) -> None:
    at = run_page("4_Agreement", with_models)
    next(m for m in at.multiselect if m.label == "Models").unselect("sim-model-2").run()
    with sessions.begin() as session:
        rows = session.scalars(select(Prediction).where(Prediction.model_id == "sim-model-1")).all()
        session.execute(insert(Prediction), [
            {**{c.name: getattr(row, c.name) for c in Prediction.__table__.columns if c.name != "id"},
             "model_id": "sim-model-4"} for row in rows])
    at.run()
    assert "1 new model since you opened this page" in infos(at)
    next(b for b in at.button if b.label == "Include").click().run()
    assert set(next(m for m in at.multiselect if m.label == "Models").value) == {"sim-model-1", "sim-model-3", "sim-model-4"}


def test_downloads_name_the_batches_and_models_they_contain(sessions, with_models: int) -> None:
    at = run_page("4_Agreement", with_models)
    contents = at.session_state["analysis:contents"]  # what table_downloads names and adds as a sheet
    with sessions() as session:
        assert contents.batches == tuple(sorted(b.id for b in list_batches(session, with_models)))
    assert contents.models == ("sim-model-1", "sim-model-2", "sim-model-3")
    assert contents.tag() == "batches-" + "-".join(map(str, contents.batches))
    assert contents.sheet()["id"].tolist() == [*map(str, contents.batches), *contents.models]


def test_a_report_computed_ahead_is_shown_as_is(sessions, with_models: int) -> None:
    """The background computation (``compute_ahead``) yields exactly ``build_report``'s tables,
    and the page shows them without computing again."""
    data.compute_ahead(sessions, with_models, Filters(), FAST)
    key = data.report_key(sessions, with_models, Filters(), FAST)
    ahead = data._ahead(key).result(timeout=0)
    with sessions() as session:
        direct = build_report(load_ratings(session, with_models, None), load_predictions(session, with_models),
                              load_stimuli(session, with_models), describe_models(session), n_boot=FAST.n_boot)
    assert ahead.keys() == direct.keys()
    for name, table in direct.items():
        pd.testing.assert_frame_equal(ahead[name], table, obj=name)
    at = run_page("4_Agreement", with_models)
    assert not computed(at)
    fleiss = ahead["fleiss"].loc[ahead["fleiss"]["metric"] == "fleiss_kappa", "estimate"].iloc[0]
    assert next(m.value for m in at.metric if m.label == "Fleiss' kappa (labels)") == f"{fleiss:.2f}"
    assert data._ahead(key) is None  # handed to the cache


def test_the_first_page_after_compute_ahead_reads_the_database_once(sessions, with_models: int, monkeypatch) -> None:
    """The frames the background computation loaded serve the first page too: loading the
    ratings and predictions of a FER+-size study again took 2.1 s of that page's first view."""
    loads = []
    load = data._load_frames
    monkeypatch.setattr(data, "_load_frames", lambda *args: loads.append(args) or load(*args))
    data.compute_ahead(sessions, with_models, Filters(), FAST)
    at = run_page("4_Agreement", with_models)
    assert not computed(at)
    assert len(loads) == 1


def test_the_router_computes_the_analysis_while_a_page_is_read(sessions, with_models: int) -> None:
    """app.py queues the current study's report once the Home page has rendered; the first
    Agreement view then finds it ready."""
    home = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    home.session_state["analysis:settings"] = FAST
    home.run()
    assert not home.exception
    key = data.report_key(sessions, with_models, Filters(), FAST)
    deadline = time.monotonic() + TIMEOUT
    while (data._ahead(key) is None or not data._ahead(key).done()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert data._ahead(key).exception() is None
    assert not computed(run_page("4_Agreement", with_models))


def test_the_valence_arousal_table_fits_and_shows_every_column_on_request(with_models: int) -> None:
    """Issue 10: the models' valence/arousal table with the ceiling beside it needed horizontal
    scrolling; by default it shows eight columns, a toggle shows all of them."""
    at = run_page("4_Agreement", with_models)

    def table():
        return next(d for d in at.dataframe if "human_median" in d.value.columns and "reference" in d.value.columns)

    assert list(table().proto.column_order) == [
        "model_id", "dimension", "metric", "estimate [95% CI]", "human_median", "human_q25", "human_q75", "n"]
    assert {"model_name", "ci_method", "reference"} <= set(table().value.columns)  # still sent, one click away
    at.toggle(key="agreement-continuous-all-columns").set_value(True).run()
    assert not at.exception
    assert list(table().proto.column_order) == []  # every column, in the table's order


def add_late_batch(sessions, study_id: int) -> int:
    """A coauthor's batch: the first batch's ratings again under new rater names."""
    with sessions.begin() as session:
        first = min(b.id for b in list_batches(session, study_id))
        ratings = session.scalars(select(Rating).where(Rating.batch_id == first)).all()
        batch = RatingBatch(study_id=study_id, file_name="late.csv", sha256="9" * 64, layout="long",
                            n_rows=len(ratings))
        session.add(batch)
        session.flush()
        session.execute(insert(Rating), [
            {"batch_id": batch.id, "stimulus_id": r.stimulus_id, "rater": f"late-{r.rater}", "emotion": r.emotion,
             "emotion_raw": r.emotion_raw, "valence": r.valence, "arousal": r.arousal} for r in ratings])
        return batch.id


def test_a_new_batch_stays_announced_after_a_page_change(sessions, ratings_only: int) -> None:
    """Issue 10: with a narrowed batch choice, a coauthor's new batch is announced; leaving the
    page and coming back must keep the announcement (it used to vanish, leaving the old batches
    selected without a word)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["study_id"] = ratings_only
    at.session_state["analysis:settings"] = FAST
    at.run()
    at.switch_page("pages/4_Agreement.py").run()
    batches = next(m for m in at.multiselect if m.label == "Rating batches")
    first, second = batches.value
    batches.unselect(second).run()
    late = add_late_batch(sessions, ratings_only)
    at.run()
    announced = "1 new batch since you opened this page"
    assert any(announced in i.value for i in at.sidebar.info)
    at.switch_page("pages/3_Models.py").run()
    at.switch_page("pages/4_Agreement.py").run()
    assert not at.exception
    assert any(announced in i.value for i in at.sidebar.info)
    at.sidebar.button(key="agreement-batches-include").click().run()
    assert next(m for m in at.multiselect if m.label == "Rating batches").value == [first, late]
