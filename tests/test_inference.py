"""The inference runner: caching, resume, per-stimulus failures, cache invalidation, devices.

The runner is model-agnostic, so these tests drive it with a tiny counting adapter defined here
(its forward pass is a real computation on the prepared pixels); the real adapters run through
it in test_inference_models-style integration tests below when the registry is present.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import event, select

from core.access import Role
from core.faces.crops import Face, crop_box
from core.io.storage import store_bytes
from core.models.adapters.base import ModelOutput
from core.models.devices import (
    DeviceError,
    PrecisionCheck,
    check_half,
    compare_outputs,
    precision_tag,
    resolve_device,
)
from core.models.spec import ModelSpec, Preprocessing
from core.workflows import inference, preparation
from db.models import Prediction, Stimulus, Study
from db.predictions import CacheKey, PredictionRow, prediction_summary, failed_stimuli, save_predictions

LABELS = ("Happy", "Sad", "Neutral")

FAKE_SPEC = ModelSpec(
    id="fake_counter",
    name="Counting fake",
    pipeline="T test",
    adapter="fake",
    paper="-",
    license="MIT",
    architecture="mean pooling",
    pretraining="none",
    training_data="none",
    strategy="none",
    params=0,
    checkpoints=(),
    preprocessing=Preprocessing(version="fake-v1", input_size=(8, 8), colour="RGB", crop="tight_box"),
    native_labels=LABELS,
    outputs=frozenset({"probs", "va"}),
)


class CountingAdapter:
    """Crop, shrink to 8x8, mean colour -> 3 logits and V/A; counts images through forward."""

    def __init__(self, spec: ModelSpec, fail_forward: bool = False, needs_landmarks: bool = False) -> None:
        self.spec = spec
        self.needs_landmarks = needs_landmarks
        self.forwarded = 0
        self.batches: list[int] = []
        self.released = False
        self.fail_forward = fail_forward

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        if self.needs_landmarks and face.landmarks is None:
            raise ValueError("the aligned crop needs 5 landmarks")
        crop = Image.fromarray(crop_box(image_rgb, face.box)).resize((8, 8), Image.Resampling.BILINEAR)
        return np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.fail_forward:
            raise RuntimeError("CUDA out of memory (simulated)")
        self.forwarded += len(batch)
        self.batches.append(len(batch))
        means = batch.mean(axis=(2, 3))
        return {"logits": means, "va": means[:, :2] * 2 - 1}

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        logits = raw["logits"]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        canonical = self.spec.canonical_labels
        return [
            ModelOutput(
                label=canonical[int(row.argmax())],
                probs={name: float(p) for name, p in zip(canonical, row)},
                valence=float(va[0]), arousal=float(va[1]),
            )
            for row, va in zip(probs, raw["va"])
        ]

    def release(self) -> None:
        self.released = True


class Source:
    """Adapter source that records how often a model was loaded."""

    def __init__(self, **options) -> None:
        self.loads = 0
        self.adapters: list[CountingAdapter] = []
        self.options = options

    def __call__(self, spec: ModelSpec, device: str, half: bool) -> CountingAdapter:
        self.loads += 1
        self.adapters.append(CountingAdapter(spec, **self.options))
        return self.adapters[-1]

    @property
    def forwarded(self) -> int:
        return sum(adapter.forwarded for adapter in self.adapters)


def _png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_study(sessions, n: int, *, bad: set[int] = frozenset(), detect: set[int] = frozenset()) -> int:
    """A study of ``n`` small random pre-cropped images; indices in ``bad`` get bytes that are no
    image, indices in ``detect`` go through face detection instead."""
    with sessions.begin() as session:
        study = Study(name=f"runner-{n}")
        session.add(study)
        session.flush()
        for index in range(n):
            data = b"not an image %d" % index if index in bad else _png(index)
            session.add(Stimulus(
                study_id=study.id, path=f"img{index:04d}.png", sha256=store_bytes(data),
                media_type="image/png", width=48, height=48, thumbnail=b"", precropped=index not in detect,
            ))
        return study.id


def run(sessions, study_id, source, spec=FAKE_SPEC, weights="w" * 64, **options):
    return inference.run_spec(sessions, study_id, spec, weights, device="cpu",
                              adapter_source=source, **options, actor=Role.OPERATOR)


def stored(sessions) -> list[Prediction]:
    with sessions() as session:
        return list(session.scalars(select(Prediction).order_by(Prediction.id)))


def test_first_run_stores_one_prediction_per_image_and_second_run_computes_nothing(data_dir, sessions):
    study_id = make_study(sessions, 10)
    source = Source()
    first = run(sessions, study_id, source, batch_size=4)
    assert (first.computed, first.cached, first.failed, first.skipped) == (10, 0, 0, 0)
    assert source.adapters[0].batches == [4, 4, 2]
    rows = stored(sessions)
    assert len(rows) == 10 and {row.status for row in rows} == {"ok"}
    assert all(set(row.probs) == {"happiness", "sadness", "neutral"} for row in rows)
    assert all(abs(sum(row.probs.values()) - 1) < 1e-6 for row in rows)

    second = run(sessions, study_id, source, batch_size=4)
    assert (second.computed, second.cached) == (0, 10)
    assert source.loads == 1 and source.forwarded == 10  # the model was not even loaded again
    assert len(stored(sessions)) == 10


def test_progress_counts_computed_images_up_to_total(data_dir, sessions):
    study_id = make_study(sessions, 7)
    calls = []
    run(sessions, study_id, Source(), batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 7), (3, 7), (6, 7), (7, 7)]


def test_cancelled_run_keeps_finished_batches_and_rerun_completes_the_rest(data_dir, sessions):
    study_id = make_study(sessions, 10)
    source = Source()
    stop_after_first = {"batches": 0}

    def should_stop() -> bool:
        stop_after_first["batches"] += 1
        return True

    first = run(sessions, study_id, source, batch_size=4, should_stop=should_stop)
    assert first.cancelled and (first.computed, first.skipped) == (4, 6)
    assert len(stored(sessions)) == 4

    second = run(sessions, study_id, source, batch_size=4)
    assert (second.computed, second.cached, second.skipped) == (6, 4, 0)
    assert source.forwarded == 10  # every image went through the network exactly once
    assert len({row.stimulus_sha256 for row in stored(sessions)}) == 10


def test_bad_stimulus_is_recorded_with_its_reason_and_not_retried(data_dir, sessions):
    study_id = make_study(sessions, 6, bad={2})
    source = Source()
    report = run(sessions, study_id, source, batch_size=4)
    assert (report.computed, report.failed) == (5, 1)
    failures = [row for row in stored(sessions) if row.status == "error"]
    assert len(failures) == 1 and "not an image that can be read" in failures[0].error
    assert failures[0].label is None and failures[0].valence is None

    again = run(sessions, study_id, source, batch_size=4)
    assert (again.computed, again.cached, again.failed) == (0, 6, 0)

    retried = run(sessions, study_id, source, batch_size=4, retry_failed=True)
    assert (retried.computed, retried.cached, retried.failed) == (0, 5, 1)
    assert len(stored(sessions)) == 6  # the retried failure replaced the old row

    with sessions() as session:
        summary = prediction_summary(session, study_id)
        failed = failed_stimuli(session, study_id)
    assert summary.to_dict("records") == [{"model_id": "fake_counter", "ok": 5, "failed": 1}]
    assert failed["stimulus"].tolist() == ["img0002.png"]


def test_image_without_face_becomes_a_failure_row(data_dir, sessions):
    """Random noise has no face for the offline Haar detector: that image fails, the rest run."""
    study_id = make_study(sessions, 3, detect={0})
    report = run(sessions, study_id, Source(), detector="haar")
    assert (report.computed, report.failed) == (2, 1)
    failure = next(row for row in stored(sessions) if row.status == "error")
    assert "no face found by haar-v2" in failure.error and failure.detector == "haar-v2"
    assert {row.detector for row in stored(sessions) if row.status == "ok"} == {"precropped"}


def test_a_crop_that_cannot_be_made_fails_each_image_without_running_the_network(data_dir, sessions):
    study_id = make_study(sessions, 3)
    source = Source(needs_landmarks=True)
    report = run(sessions, study_id, source)
    assert (report.computed, report.failed) == (0, 3) and source.forwarded == 0
    assert {row.error for row in stored(sessions)} == {"ValueError: the aligned crop needs 5 landmarks"}


def test_preprocessing_version_weights_and_precision_each_invalidate_the_cache(data_dir, sessions):
    study_id = make_study(sessions, 4)
    source = Source()
    run(sessions, study_id, source)
    bumped = replace(FAKE_SPEC, preprocessing=replace(FAKE_SPEC.preprocessing, version="fake-v2"))
    assert run(sessions, study_id, source, spec=bumped).computed == 4
    assert run(sessions, study_id, source, weights="x" * 64).computed == 4
    assert run(sessions, study_id, source).cached == 4
    keys = {(row.checkpoint_sha256[0], row.preprocessing) for row in stored(sessions)}
    assert keys == {("w", "fake-v1"), ("w", "fake-v2"), ("x", "fake-v1")}
    assert precision_tag(True) == "+fp16" and precision_tag(False) == ""


def test_network_failure_stops_the_run_but_keeps_nothing_half_written(data_dir, sessions):
    study_id = make_study(sessions, 5)
    with pytest.raises(inference.RunError, match="out of memory"):
        run(sessions, study_id, Source(fail_forward=True), batch_size=2)
    assert stored(sessions) == []


def test_the_runner_releases_a_model_it_loaded_itself(data_dir, sessions, monkeypatch):
    study_id = make_study(sessions, 2)
    source = Source()
    monkeypatch.setattr(inference.registry, "load_adapter", source)
    report = inference.run_spec(sessions, study_id, FAKE_SPEC, "w" * 64, device="cpu", actor=Role.OPERATOR)
    assert report.computed == 2 and source.adapters[0].released


def test_a_cached_rerun_costs_a_constant_number_of_prediction_queries(data_dir, sessions):
    """The cache look-up is a bulk query: 1,200 images need no more statements than 100."""
    counts = {}
    for n in (100, 1200):
        study_id = make_study(sessions, n)
        with sessions() as session:
            images = inference.study_images(session, study_id)
        with sessions.begin() as session:
            save_predictions(session, CacheKey("fake_counter", "w" * 64, "fake-v1"),
                             [PredictionRow(image.sha256, "precropped", label="neutral") for image in images], actor=Role.OPERATOR)
        statements = []
        engine = sessions.kw["bind"]
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            report = run(sessions, study_id, Source())
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert report.cached == n and report.computed == 0
        counts[n] = sum("prediction" in statement for statement in statements)
    assert counts[1200] <= counts[100] + 2  # one extra chunk of 500 keys at most


def test_device_choice_and_half_precision_rules():
    assert resolve_device("auto") in ("cuda", "mps", "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="only on CUDA"):
        check_half("cpu", True)
    assert check_half("cpu", False) is False


def test_fp16_request_on_cpu_is_refused_before_any_work(data_dir, sessions):
    study_id = make_study(sessions, 2)
    source = Source()
    with pytest.raises(DeviceError, match="fp16"):
        run(sessions, study_id, source, half=True)
    assert source.loads == 0


def test_compare_outputs_reports_the_largest_differences_and_label_agreement():
    reference = [
        ModelOutput("happiness", {"happiness": 0.7, "sadness": 0.3}, 0.50, 0.10),
        ModelOutput("sadness", {"happiness": 0.4, "sadness": 0.6}, -0.20, 0.30),
    ]
    other = [
        ModelOutput("happiness", {"happiness": 0.69, "sadness": 0.31}, 0.52, 0.10),
        ModelOutput("happiness", {"happiness": 0.55, "sadness": 0.45}, -0.20, 0.25),
    ]
    check = compare_outputs(reference, other)
    assert check == PrecisionCheck(2, pytest.approx(0.02), pytest.approx(0.05), pytest.approx(0.15), 0.5)
    assert check.max_abs_va == pytest.approx(0.05)
    assert "50.0%" in check.summary()


@given(n=st.integers(0, 40), batch_size=st.integers(1, 16))
def test_prepared_batches_cover_every_job_once_in_order(n, batch_size):
    items = [preparation.Item(f"{index:064d}", None, f"no face {index}") for index in range(n)]
    batches = list(preparation.thread_batches(items, batch_size, CountingAdapter(FAKE_SPEC)))
    assert [error for batch in batches for error in batch.errors] == [item.error for item in items]
    assert all(len(batch) <= batch_size for batch in batches)


def test_eta_is_linear_in_the_work_left():
    assert inference.eta_seconds(10.0, 0, 100) is None
    assert inference.eta_seconds(10.0, 25, 100) == pytest.approx(30.0)
    assert inference.eta_seconds(10.0, 100, 100) == 0.0


# ------------------------------------------------- a real built-in model through the command line


@pytest.fixture
def esr9_surrogate(data_dir, tmp_path, monkeypatch):
    """ESR-9's real architecture with random weights in its official legacy files, registered
    through the real checkpoint cache; the registry serves the spec whose hashes match them."""
    from core.models import registry
    from tests import model_fakes

    spec = registry.builtin_specs()["esr9"]
    surrogate = model_fakes.register_surrogate(spec, model_fakes.make_fake_checkpoint(spec, tmp_path / "esr9"))
    specs = {**registry.builtin_specs(), "esr9": surrogate}
    monkeypatch.setattr(registry, "builtin_specs", lambda: specs)
    return surrogate


def astronaut_study(sessions) -> str:
    """The astronaut photo (detected by the offline Haar detector) plus a pre-cropped face."""
    from tests import model_fakes

    image, face = model_fakes.astronaut()
    x1, y1, x2, y2 = (int(v) for v in face.box)
    with sessions.begin() as session:
        study = Study(name="astronaut")
        session.add(study)
        session.flush()
        for path, pixels, precropped in (("photo.png", image, False), ("crop.png", image[y1:y2, x1:x2], True)):
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")
            session.add(Stimulus(study_id=study.id, path=path, sha256=store_bytes(buffer.getvalue()),
                                 media_type="image/png", width=pixels.shape[1], height=pixels.shape[0],
                                 thumbnail=b"", precropped=precropped))
    return "astronaut"


@pytest.mark.slow
def test_cli_runs_a_real_model_once_and_then_serves_the_cache(db_url, sessions, esr9_surrogate, capsys):
    from core.__main__ import main

    study = astronaut_study(sessions)
    command = ["--db", db_url, "run", "--study", study, "--model", "esr9", "--detector", "haar",
               "--device", "cpu", "--batch-size", "1"]
    assert main(command) == 0
    first = capsys.readouterr()
    assert "esr9: 2 computed, 0 cached, 0 failed" in first.out
    assert "esr9: 1/2 images" in first.err and "esr9: 2/2 images" in first.err
    rows = stored(sessions)
    assert {row.detector for row in rows} == {"haar-v2", "precropped"}
    for row in rows:
        assert row.label in esr9_surrogate.canonical_labels
        assert math.isfinite(row.valence) and math.isfinite(row.arousal)
    assert main(command) == 0
    assert "esr9: 0 computed, 2 cached, 0 failed" in capsys.readouterr().out

    assert main(["--db", db_url, "run", "--study", study, "--model", "esr9", "--model", "nosuch",
                 "--detector", "haar"]) == 1
    assert "nosuch: not run: unknown model 'nosuch'" in capsys.readouterr().out
    assert main(["--db", db_url, "run", "--study", study, "--model", "esr9", "--device", "cpu", "--fp16"]) == 2
    assert "only on CUDA" in capsys.readouterr().err


def test_cli_lists_models_with_their_state(db_url, esr9_surrogate, capsys):
    from core.__main__ import main

    assert main(["--db", db_url, "models"]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " ready " in listing["esr9"] and " missing " in listing["emonet_8"]
    assert main(["--db", db_url, "register-checkpoint", "emonet_8", __file__]) == 1
    assert "not the official checkpoint" in capsys.readouterr().err


def test_card_model_registered_from_the_cli_runs_through_run_model(db_url, sessions, tmp_path, capsys):
    """No monkeypatching: a card model is a registry model like any other."""
    from core.__main__ import main
    from tests.test_card_models import TinyNet, card_text, onnx_bytes

    (tmp_path / "tiny.card.toml").write_text(card_text(), encoding="utf-8")
    (tmp_path / "tiny.onnx").write_bytes(onnx_bytes(TinyNet()))
    assert main(["--db", db_url, "register-card", str(tmp_path / "tiny.card.toml"), str(tmp_path / "tiny.onnx")]) == 0
    assert "registered card model tiny" in capsys.readouterr().out
    study_id = make_study(sessions, 5)
    progress = []
    report = inference.run_model(sessions, study_id, "tiny", device="cpu", batch_size=2,
                                 progress=lambda done, total: progress.append(done), actor=Role.OPERATOR)
    assert (report.computed, report.failed) == (5, 0) and progress == [0, 2, 4, 5]
    assert {row.model_id for row in stored(sessions)} == {"tiny"}
    assert inference.run_model(sessions, study_id, "tiny", device="cpu", actor=Role.OPERATOR).cached == 5


def test_worker_process_preparation_stores_the_same_predictions_as_threads(sessions, esr9_surrogate):
    """The DataLoader path (chosen automatically on an accelerator) forced on the CPU: the real
    ESR-9 architecture, the real photo, the same stored numbers as the thread path."""
    from sqlalchemy import delete

    astronaut_study(sessions)
    with sessions() as session:
        study_id = session.scalar(select(Study.id).where(Study.name == "astronaut"))

    def outputs(preparation: str) -> list[tuple]:
        with sessions.begin() as session:
            session.execute(delete(Prediction))
        report = inference.run_model(sessions, study_id, "esr9", device="cpu", detector="haar",
                                     batch_size=1, preparation=preparation, actor=Role.OPERATOR)
        assert (report.computed, report.failed) == (2, 0)
        return [(row.stimulus_sha256, row.label, row.probs, row.valence, row.arousal) for row in stored(sessions)]

    assert outputs("processes") == outputs("threads")
