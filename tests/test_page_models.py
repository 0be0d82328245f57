"""AppTest scenarios for pages/3_Models.py: registry table, checkpoint states, a queued run, an import.

Real weights are absent here, so every built-in model starts "missing": the page must show that
as an actionable state (where to get it, download / register buttons), never crash.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.io.storage import store_bytes
from core.models import registry
from core.io.storage import store_bytes
from db.models import Job, Prediction, Stimulus, Study
from tests import model_fakes
from tests.markdown_text import shown

TIMEOUT = 120
PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "3_Models.py")


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> list[str]:
    return [shown(element.value) for element in elements]


def wait_for_job(sessions, job_id: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            if session.get(Job, job_id).state not in ("queued", "running"):
                return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@pytest.fixture
def study_id(sessions) -> int:
    """Two pre-cropped faces cut from scikit-image's astronaut."""
    image, face = model_fakes.astronaut()
    x1, y1, x2, y2 = (int(v) for v in face.box)
    with sessions.begin() as session:
        study = Study(name="Pilot")
        session.add(study)
        session.flush()
        for index, crop in enumerate((image[y1:y2, x1:x2], image[y1:y2, x1:x2][:, ::-1])):
            buffer = io.BytesIO()
            Image.fromarray(crop.copy()).save(buffer, "PNG")
            session.add(Stimulus(study_id=study.id, path=f"face{index}.png", sha256=store_bytes(buffer.getvalue()),
                                 media_type="image/png", width=crop.shape[1], height=crop.shape[0],
                                 thumbnail=b"", precropped=True))
        return study.id


@pytest.fixture
def esr9_ready(data_dir, tmp_path, monkeypatch) -> str:
    """ESR-9 with random weights in its official files, registered through the real cache; the
    registry serves the spec whose hashes match these files."""
    spec = registry.builtin_specs()["esr9"]
    surrogate = model_fakes.register_surrogate(spec, model_fakes.make_fake_checkpoint(spec, tmp_path / "esr9"))
    specs = {**registry.builtin_specs(), "esr9": surrogate}
    monkeypatch.setattr(registry, "builtin_specs", lambda: specs)
    return "esr9"


def test_registry_renders_with_every_model_missing_as_an_actionable_state(sessions) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    comparison = at.dataframe[0].value
    assert set(comparison["Model"]) >= {spec.name for spec in registry.builtin_specs().values()}
    assert {"Architecture", "Pre-training", "Training data", "Strategy", "Classes", "VA output"} <= set(comparison.columns)
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download LaTeX"]
    status = at.dataframe[1].value
    assert set(status["state"]) == {"missing"}
    warnings = texts(at.warning)
    assert any("enet_b0_8_va_mtl" in text and "missing" in text for text in warnings)
    where = [text for text in texts(at.text) if "Where to get it" in text]
    assert any("github.com/sb-ai-lab/EmotiEffLib" in text for text in where)
    labels = [b.label for b in at.button]
    assert "Download" in labels  # EmotiEffLib, EmoNet and ESR-9 publish their files
    assert "Create or pick a study on the Home page to run models." in texts(at.info)


def add_prediction(sessions, stimulus_path: str, status: str = "ok") -> None:
    with sessions.begin() as session:
        sha = session.scalar(select(Stimulus.sha256).where(Stimulus.path == stimulus_path))
        session.add(Prediction(stimulus_sha256=sha, model_id="esr9", checkpoint_sha256="c" * 64,
                               preprocessing=status, detector="precropped", status=status, label="happiness",
                               error="no face" if status == "error" else None))


def test_prediction_counts_are_read_once_per_data_version(sessions, study_id, monkeypatch) -> None:
    """The newest prediction per stimulus and model takes seconds on a FER+-size study (285,664
    predictions): the page reads it once for its counts, skips the failure list when no
    prediction failed, and a re-render of unchanged data reads it no more."""
    from db import predictions

    reads = []
    latest = predictions.latest_predictions
    monkeypatch.setattr(predictions, "latest_predictions", lambda *args: reads.append(args) or latest(*args))
    for path in ("face0.png", "face1.png"):
        add_prediction(sessions, path)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.dataframe[1].value.set_index("model_id").loc["esr9", "ok"] == 2
    assert "No failed stimuli." in texts(at.caption)
    assert len(reads) == 1
    at.run()
    assert len(reads) == 1

    add_prediction(sessions, "face1.png", status="error")  # newer: the stimulus' result is now a failure
    at.run()
    status = at.dataframe[1].value.set_index("model_id")
    assert (status.loc["esr9", "ok"], status.loc["esr9", "failed"]) == (1, 1)
    failed = next(frame.value for frame in at.dataframe if "error" in frame.value.columns)
    assert failed["stimulus"].tolist() == ["face1.png"] and failed["error"].tolist() == ["no face"]


def test_a_wrong_upload_is_refused_with_the_reason(sessions) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.file_uploader(key="upload_mbf_va_mtl").set_value(("mbf_va_mtl.onnx", b"not the model", "application/octet-stream"))
    at.run()
    button(at, "Register file").click().run()
    assert not at.exception
    assert any("not the official checkpoint" in text for text in texts(at.error))


@pytest.mark.slow
def test_run_a_ready_model_then_import_predictions(sessions, study_id, esr9_ready) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    status = at.dataframe[1].value.set_index("model_id")
    assert status.loc["esr9", "state"] == "ready" and status.loc["emonet_8", "state"] == "missing"
    assert at.multiselect[0].value == ["esr9"]
    detector = next(box for box in at.selectbox if box.label == "Face detector")
    assert detector.value == "haar"  # MTCNN weights are not downloaded here
    button(at, "Run models").click().run()
    assert not at.exception
    assert any("Queued job #1: run esr9" in text for text in texts(at.success))
    wait_for_job(sessions, 1)  # run by this server's in-process worker thread
    at.run()
    jobs_table = next(frame.value for frame in at.dataframe if "job" in frame.value.columns)
    assert jobs_table.loc[0, "state"] == "done"
    assert "esr9: 2 computed, 0 cached, 0 failed" in jobs_table.loc[0, "progress"]
    with sessions() as session:
        rows = session.scalars(select(Prediction)).all()
    assert len(rows) == 2 and {row.status for row in rows} == {"ok"}
    status = at.dataframe[1].value.set_index("model_id")
    assert status.loc["esr9", "ok"] == 2

    csv = "file,Happy,Sad,Valence\nface0.png,0.9,0.1,0.5\nface1.png,0.2,0.8,-0.4\nghost.png,0.5,0.5,0\n"
    at.file_uploader(key="predictions_file_0").set_value(("fr.csv", csv.encode(), "text/csv"))
    at.run()
    assert not at.exception
    assert any("1 of 3 rows have problems" in text for text in texts(at.error))
    next(box for box in at.checkbox if box.label.startswith("Store rows with bad values")).check()
    next(box for box in at.text_input if box.label == "Model id").input("facereader-9")
    at.run()
    button(at, "Import predictions").click().run()
    assert not at.exception
    assert any("facereader-9: 2 predictions stored" in text for text in texts(at.success))
    assert any("facereader-9: 2 predictions stored" in text for text in texts(at.toast))
    assert not any(b.label == "Import predictions" for b in at.button)  # the file left with its form
    status = at.dataframe[1].value.set_index("model_id")
    assert status.loc["facereader-9", "state"] == "imported" and status.loc["facereader-9", "ok"] == 2


def test_jobs_panel_polls_fast_only_while_a_job_is_active(monkeypatch) -> None:
    """An idle panel polled every 2 s kept the server 5 % busy per open Models page."""
    from ui import jobs_panel as panel

    calls = []
    monkeypatch.setattr(panel, "_live_panel", lambda factory, study: calls.append("live"))
    monkeypatch.setattr(panel, "_quiet_panel", lambda factory, study: calls.append("quiet"))
    for states in ([], ["done", "failed"], ["done", "running"], ["queued"]):
        monkeypatch.setattr(panel, "_jobs", lambda factory, study, s=states: pd.DataFrame({"state": s}))
        panel.jobs_panel(None, 1)
    assert calls == ["quiet", "quiet", "live", "live"]
    assert panel.QUIET_SECONDS > panel.LIVE_SECONDS
