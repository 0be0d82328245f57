"""AppTest of the Disagreements page on the demo study: ranking, filters, downloads, and that a
reviewer's browser never receives an original face thumbnail unless the study allows it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.access.passwords import hash_password
from core.io.images import blurred_thumbnail
from core.workflows.demo import load_demo
from db.models import Stimulus
from db.stimuli import set_reviewers_see_faces
from tests.test_startup_imports import MODEL_RUNTIMES, loaded_after
from ui.analysis_data import Settings
from ui.chrome import PASSWORD_KEY, ROLE_KEY

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "9_Disagreements.py")
TIMEOUT = 120
FAST = Settings(n_boot=100)  # CIs are not shown on this page; keeps the report short
DEMO_MODELS = ("demo-model-a", "demo-model-b", "demo-model-c")


@pytest.fixture
def demo_study(sessions) -> int:
    with sessions.begin() as session:
        return load_demo(session, actor=Role.OPERATOR)


def data_url(picture: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(picture).decode("ascii")


def thumbnails(sessions, study_id: int) -> dict[str, bytes]:
    with sessions() as session:
        return dict(session.execute(select(Stimulus.path, Stimulus.thumbnail).where(Stimulus.study_id == study_id)).all())


def run_as_owner(study_id: int) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["study_id"] = study_id
    at.session_state["analysis:settings"] = FAST
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown_table(at: AppTest):
    return at.dataframe[0].value


def sent_images(at: AppTest) -> list[str]:
    """The image sources the page sends to the browser (data URLs pass through unchanged)."""
    return [url for element in at.get("image") for url in element.value]


def test_stimuli_are_ranked_with_thumbnails_humans_and_every_model(demo_study, sessions) -> None:
    at = run_as_owner(demo_study)
    table = shown_table(at)
    assert len(table) == 20
    assert table["rank"].is_monotonic_increasing and table["disagreement"].is_monotonic_decreasing
    assert {"human votes", "valence (mean ± SD)", "arousal (mean ± SD)"} <= set(table.columns)
    for model in DEMO_MODELS:
        assert any(column.endswith(model) for column in table.columns), model
    originals = thumbnails(sessions, demo_study)
    assert sent_images(at) == [data_url(originals[path]) for path in table["stimulus"]]
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels.count("CSV") == 2 and labels.count("XLSX") == 2


def test_filters_and_model_model_ranking(demo_study) -> None:
    at = run_as_owner(demo_study)
    at.multiselect(key="disagreements-emotions").select("happiness").run()
    table = shown_table(at)
    assert len(table) > 0 and set(table["human majority"]) == {"happiness"}
    at.radio(key="disagreements-kind").set_value("models").run()
    at.selectbox(key="disagreements-by-models").set_value("mean_pairwise_jsd").run()
    assert not at.exception, [e.value for e in at.exception]
    table = shown_table(at)
    assert set(table["human majority"]) == {"happiness"}
    assert table["disagreement"].notna().all() and table["disagreement"].is_monotonic_decreasing
    at.radio(key="disagreements-across").set_value("pipelines").run()  # the demo models share one
    assert any("needs outputs of at least two pipelines" in info.value for info in at.info)
    assert shown_table(at)["disagreement"].isna().all()
    at.selectbox(key="disagreements-attribute").set_value("poser_gender").run()
    assert not at.exception


def test_one_model_ranks_by_its_own_disagreement(demo_study) -> None:
    at = run_as_owner(demo_study)
    at.selectbox(key="disagreements-by-human").set_value("majority_mismatch").run()
    at.selectbox(key="disagreements-model").set_value("demo-model-c").run()
    table = shown_table(at)
    assert set(table["disagreement"].dropna()) <= {0.0, 1.0}
    assert not any(column.endswith("demo-model-a") for column in table.columns)


def test_a_reviewer_receives_blurred_thumbnails_only_until_the_study_allows_faces(demo_study, sessions) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.secrets["passwords"] = {"reviewer": hash_password("r-pass")}
    at.session_state["analysis:settings"] = FAST
    at.run()
    at.text_input(key=PASSWORD_KEY).input("r-pass").run()
    assert at.session_state[ROLE_KEY] is Role.REVIEWER and not at.exception
    originals = thumbnails(sessions, demo_study)
    sent = sent_images(at)
    assert sent == [data_url(blurred_thumbnail(originals[path])) for path in shown_table(at)["stimulus"]]
    assert not {data_url(picture) for picture in originals.values()} & set(sent)
    assert any("blurred thumbnails only" in caption.value for caption in at.caption)
    with sessions.begin() as session:
        set_reviewers_see_faces(session, demo_study, True, actor=Role.OWNER)
    at.run()
    assert sent_images(at) == [data_url(originals[path]) for path in shown_table(at)["stimulus"]]


def test_the_page_modules_import_no_model_runtime() -> None:
    loaded = loaded_after("import core.agreement.disagreement, core.io.images, ui.analysis_data, ui.downloads, ui.chrome")
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded


@pytest.mark.slow
def test_the_rendered_page_imports_no_model_runtime(demo_study) -> None:
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({PAGE!r}, default_timeout=240)\n"
        f"at.session_state['study_id'] = {demo_study}\n"
        "at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "assert at.dataframe, 'the ranking was not shown'"
    )
    loaded = loaded_after(code)
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded
