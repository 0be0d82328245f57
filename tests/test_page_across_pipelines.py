"""AppTest of pages/8_Across_pipelines.py on seeded SQLite studies.

Four simulated models in three pipelines (imported-prediction rows name the pipelines, one with
a hostile name and paper), so the consensus model, pipeline spread and replication exist.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.agreement.pipelines import CONSENSUS_ID
from db.models import RegisteredModel
from tests.analysis_seed import seed_study
from tests.markdown_text import shown
from tests.test_pages_analysis import FAST, TIMEOUT, chart_rows, downloads, specs
from tests.test_startup_imports import MODEL_RUNTIMES, ROOT, loaded_after

PAGE = str(ROOT / "pages" / "8_Across_pipelines.py")
PIPELINES = {"sim-model-1": "P1 <b>one</b>", "sim-model-2": "P1 <b>one</b>", "sim-model-3": "P2", "sim-model-4": "P3"}
PAPER = r"Evil & Co (2024). A_paper with {braces} \input{x}"


@pytest.fixture
def study(sessions) -> int:
    seeded = seed_study(sessions, "pipelines", n_stimuli=32, n_raters=6, n_models=4, seed=8)
    with sessions.begin() as session:
        for model_id, pipeline in PIPELINES.items():
            session.add(RegisteredModel(id=model_id, source="imported", card={
                "name": f"{model_id} $x^2$", "pipeline": pipeline, "paper": PAPER}))
    return seeded.study_id


def run_page(study_id: int) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["study_id"] = study_id
    at.session_state["analysis:settings"] = FAST
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame_with(at: AppTest, column: str):
    return next(df.value for df in at.dataframe if column in getattr(df.value, "columns", []))


def test_page_shows_every_section_with_downloads(study: int) -> None:
    at = run_page(study)
    assert [tab.label for tab in at.tabs] == [
        "Model differences", "Pipelines", "Replication", "Rater planning", "Test-retest", "Methods text"]
    differences = at.dataframe[0].value
    assert {"holm_significant", "within_human_range"} <= set(differences.columns)
    assert set(differences["comparison"]) == {"model vs model", "model vs human ceiling"}
    assert (differences["holm_significant"] == (differences["p_holm"] < 0.05)).all()
    assert CONSENSUS_ID in set(differences["model_a"]) | set(differences["model_b"])
    pipelines = frame_with(at, "n_models")
    assert {"P1 <b>one</b>", "P2", "P3", "all pipelines"} <= set(pipelines["pipeline"])
    assert {"between_pipeline_sd", "within_pipeline_sd"} <= set(pipelines["statistic"])
    forest = chart_rows(at, "poser_gender: female")
    assert {"pooled (all pipelines)", "humans (ceiling)"} <= set(forest["label"])
    assert any("holds in" in shown(m.value) for m in at.markdown)
    planning = next(s for s in specs(at) if s.get("title") == "Reliability of the mean of k raters")
    targets = chart_rows(at, "Reliability of the mean of k raters")
    assert {0.7, 0.8, 0.9} <= set(targets["target"].dropna()) and planning
    needed = frame_with(at, "target")
    assert set(needed["target"].dropna()) == {0.7, 0.8, 0.9}
    assert "No repeated ratings" in " ".join(c.value for c in at.caption)
    labels = downloads(at)
    assert {"CSV", "XLSX", "LaTeX", "SVG", "PNG", "methods\\.md", "methods\\.tex", "references\\.bib"} <= set(labels)
    assert labels.count("CSV") >= 6  # differences, pipelines, two replication tables, two planning tables


def test_consensus_representatives_come_from_the_sidebar(study: int) -> None:
    at = run_page(study)
    choice = next(s for s in at.sidebar.selectbox if shown(s.label) == "Representative of P1 <b>one</b>")
    assert choice.value == "sim-model-1" and choice.options == ["sim-model-1", "sim-model-2", "(leave out)"]
    choice.select("sim-model-2").run()
    assert not at.exception
    models = frame_with(at, "p_holm")
    assert CONSENSUS_ID in set(models["model_a"]) | set(models["model_b"])
    leave = next(s for s in at.sidebar.selectbox if s.label == "Representative of P2")
    leave.select("(leave out)").run()
    other = next(s for s in at.sidebar.selectbox if s.label == "Representative of P3")
    other.select("(leave out)").run()
    differences = at.dataframe[0].value
    assert CONSENSUS_ID not in set(differences["model_a"]) | set(differences["model_b"])


def test_replication_finding_picked_in_the_sidebar(study: int) -> None:
    at = run_page(study)
    attribute = next(s for s in at.sidebar.selectbox if s.label == "Subgroup attribute")
    attribute.select("poser_gender").run()
    next(s for s in at.sidebar.selectbox if s.label == "Group a").select("male").run()
    next(s for s in at.sidebar.selectbox if s.label == "Group b (a minus b)").select("female").run()
    assert not at.exception
    finding = next(s for s in at.selectbox if s.label == "Finding")
    assert any(option.startswith("poser_gender: male − female") for option in finding.options)
    assert chart_rows(at, "poser_gender: male − female") is not None


def test_page_imports_no_model_runtime(data_dir) -> None:
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({PAGE!r}, default_timeout=240).run()\n"
        "assert not at.exception, [e.value for e in at.exception]"
    )
    loaded = loaded_after(code)
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded
