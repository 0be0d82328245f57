"""Multitask-CNN on pre-aligned crops and EmoNet's crop from a 68-landmark box, against the
official steps re-implemented here from the cited lines (Multitask-CNN b8089ee, EmoNet 49eef30,
face-alignment v1.5.0), plus the note every EmoNet prediction carries about its crop."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import select
from torchvision import transforms

from core.faces import fan68
from core.faces.crops import Face
from core.faces.detection import HAAR_VERSION
from core.io.storage import store_bytes
from core.models import checkpoints, registry
from core.models.adapters import emonet as emonet_adapter
from core.models.adapters import multitask_cnn as mt
from core.models.face_profiles import crop_note, detector_for, get_profile
from core.models.nets.resnet50_ferplus import MultitaskCNN
from core.models.nets.state_dict import load_strict
from core.models.variants import ALIGNED_CROPS_SUFFIX, declare_aligned_crops
from db.models import Prediction, Stimulus, Study
from db.predictions import latest_predictions
from tests.model_fakes import astronaut, make_fake_checkpoint, register_surrogate
from tests.test_inference import FAKE_SPEC, Source, make_study, run

SPECS = registry.builtin_specs()


def random_face_crop(seed: int, size: tuple[int, int] = (97, 83)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


# --- Multitask-CNN: pre-aligned crops -------------------------------------------------------------


def official_prealigned_input(crop_rgb: np.ndarray, folder: Path) -> np.ndarray:
    """run_pretrained_model.py:62 (open as RGB) and :133-141 (Resize(int(112 * 1.2)),
    CenterCrop(112), ToTensor, x255, Normalize(mean, std 1)) on a file of the user's folder."""
    path = folder / "face.png"
    Image.fromarray(crop_rgb).save(path)
    pipeline = transforms.Compose([
        transforms.Resize(int(112 * 1.2)), transforms.CenterCrop((112, 112)), transforms.ToTensor(),
        lambda x: x * 255.0, transforms.Normalize(mean=list(mt.PREPROCESSING.mean), std=[1, 1, 1]),
    ])
    return pipeline(Image.open(path).convert("RGB")).numpy()


@pytest.mark.parametrize("model_id", ["wtomin_mtl", "wtomin_mtl@jpeg100", "wtomin_mtl_s3"])
def test_declared_aligned_crops_prepare_as_run_pretrained_model(model_id: str, tmp_path: Path) -> None:
    spec = declare_aligned_crops(SPECS[model_id])
    crop = random_face_crop(1)
    ours = mt.MultitaskCNNAdapter(spec, students=[]).prepare(crop, Face.whole_image(crop))
    official = official_prealigned_input(crop, tmp_path)
    diff = float(np.abs(ours - official).max())
    print(f"\n{model_id}+aligned-crops input: max |diff| = {diff:.3g}")
    assert diff < 1e-4


def test_without_the_declaration_a_precropped_face_is_refused_with_the_way_out() -> None:
    crop = random_face_crop(2)
    with pytest.raises(ValueError, match="aligned-crops option"):
        mt.MultitaskCNNAdapter(SPECS["wtomin_mtl"], students=[]).prepare(crop, Face.whole_image(crop))


def test_the_declaration_does_not_cover_a_detected_box_without_landmarks() -> None:
    crop = random_face_crop(3)
    adapter = mt.MultitaskCNNAdapter(declare_aligned_crops(SPECS["wtomin_mtl"]), students=[])
    with pytest.raises(ValueError, match="landmarks"):
        adapter.prepare(crop, Face(box=(10.0, 10.0, 60.0, 70.0), score=0.9))  # e.g. a Haar box


def test_declared_aligned_crops_have_their_own_cache_key_and_leave_other_models_alone() -> None:
    for spec in SPECS.values():
        declared = declare_aligned_crops(spec)
        if spec.preprocessing.crop == "aligned_5pt":
            assert declared.preprocessing.version == spec.preprocessing.version + ALIGNED_CROPS_SUFFIX
            assert declared.id == spec.id and declared.checkpoints == spec.checkpoints
            assert declare_aligned_crops(declared) == declared
        else:
            assert declared is spec


def test_landmark_faces_are_aligned_as_before_under_the_declaration() -> None:
    image, face = astronaut()
    plain = mt.MultitaskCNNAdapter(SPECS["wtomin_mtl"], students=[]).prepare(image, face)
    declared = mt.MultitaskCNNAdapter(declare_aligned_crops(SPECS["wtomin_mtl"]), students=[]).prepare(image, face)
    np.testing.assert_array_equal(plain, declared)


@pytest.mark.slow
def test_declared_aligned_crop_student_outputs_equal_the_official_network_on_it(data_dir: Path, tmp_path: Path) -> None:
    spec = declare_aligned_crops(SPECS["wtomin_mtl_s0"])
    files = make_fake_checkpoint(spec, tmp_path / "weights")
    adapter = registry.load_adapter(register_surrogate(spec, files))
    crop = random_face_crop(4, (140, 120))
    raw = adapter.forward(adapter.prepare(crop, Face.whole_image(crop))[None])
    network = load_strict(MultitaskCNN(), files[0]).eval()
    with torch.no_grad():
        expected = network(torch.from_numpy(official_prealigned_input(crop, tmp_path)[None]))
    for key in ("expr", "au", "va"):
        diff = float(np.abs(raw[key][:, 0] - expected[key].numpy()).max())
        print(f"\nwtomin_mtl_s0+aligned-crops {key}: max |diff| = {diff:.3g}")
        assert diff < 1e-3


def test_a_run_with_aligned_crops_stores_under_the_declared_version(data_dir, sessions) -> None:
    aligned_model = replace(FAKE_SPEC, preprocessing=replace(FAKE_SPEC.preprocessing, crop="aligned_5pt"))
    study_id = make_study(sessions, 2)
    run(sessions, study_id, Source(), spec=aligned_model, aligned_crops=True)
    run(sessions, study_id, Source(), spec=aligned_model)
    with sessions() as session:
        versions = sorted(session.scalars(select(Prediction.preprocessing)))
    assert versions == ["fake-v1"] * 2 + ["fake-v1" + ALIGNED_CROPS_SUFFIX] * 2


# --- EmoNet: the crop from 68 FAN landmarks -----------------------------------------------------


def official_emonet_eval_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """affecnet.py:123-126 (box = min/max of the landmarks) into DataAugmentor with no
    augmentation: data_augmentation.py:7-12 (get_scale_center), :18-27 (get_transform),
    :141-142 (warpAffine to 256 x 256, OpenCV's defaults)."""
    bb = [landmarks.min(axis=0)[0], landmarks.min(axis=0)[1], landmarks.max(axis=0)[0], landmarks.max(axis=0)[1]]
    center = np.array([bb[2] - (bb[2] - bb[0]) / 2, bb[3] - (bb[3] - bb[1]) / 2])
    scale = (bb[2] - bb[0] + bb[3] - bb[1]) / 220.0
    h = 200 * scale
    t = np.zeros((3, 3))
    t[0, 0] = 256 / h
    t[1, 1] = 256 / h
    t[0, 2] = 256 * (-float(center[0]) / h + 0.5)
    t[1, 2] = 256 * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1
    matrix = t[:2]
    return matrix, cv2.warpAffine(image, matrix, (256, 256))


IMAGE = np.random.default_rng(7).integers(0, 256, (180, 240, 3), dtype=np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    centre=st.tuples(st.floats(-20, 260), st.floats(-20, 200)),
    spread=st.tuples(st.floats(4, 150), st.floats(4, 150)),
    seed=st.integers(0, 2**32 - 1),
)
def test_emonet_crop_from_68_landmarks_matches_the_official_evaluation(centre, spread, seed) -> None:
    offsets = np.random.default_rng(seed).uniform(-1, 1, (68, 2)) * np.array(spread)
    landmarks = np.array(centre) + offsets
    face = Face(box=fan68.landmark_box(landmarks), score=0.99)
    official_matrix, official_crop = official_emonet_eval_crop(IMAGE, landmarks)
    np.testing.assert_allclose(emonet_adapter.evaluation_crop_matrix(face.box), official_matrix, rtol=1e-9, atol=1e-9)
    ours = emonet_adapter.emonet_crop(IMAGE, face)
    assert np.abs(ours.astype(int) - official_crop.astype(int)).max() <= 1


@given(points=st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1, max_size=68))
def test_landmark_box_contains_every_point_and_touches_the_extremes(points) -> None:
    x1, y1, x2, y2 = fan68.landmark_box(np.array(points))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assert (x1, y1, x2, y2) == (min(xs), min(ys), max(xs), max(ys))


@pytest.mark.parametrize("bad", [np.zeros((0, 2)), np.zeros(5), np.array([[np.nan, 1.0]])])
def test_landmark_box_refuses_what_is_not_a_point_set(bad) -> None:
    with pytest.raises(ValueError):
        fan68.landmark_box(bad)


def test_emonet_profile_prefers_fan68_only_when_it_can_run_and_notes_the_crop() -> None:
    profile = get_profile(SPECS["emonet_8"].preprocessing.face_profile)
    assert SPECS["emonet_8@eval-flip"].preprocessing.face_profile == "emonet"
    assert detector_for(profile, "mtcnn", None) == "fan68"
    assert detector_for(profile, "mtcnn", "package missing") == "mtcnn"
    assert detector_for(get_profile("shared"), "mtcnn", None) == "mtcnn"
    assert "as the official evaluation" in crop_note(profile, "fan68-v1", None)
    fallback = crop_note(profile, "mtcnn-v1#1", "package missing")
    assert fallback.startswith("fallback") and "mtcnn-v1#1" in fallback and "package missing" in fallback
    assert "whole image" in crop_note(profile, "precropped", "package missing")
    assert crop_note(get_profile("shared"), "mtcnn-v1", None) is None


def _astronaut_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()[0]).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.skipif(fan68.package_installed(), reason="checks the fallback without face-alignment")
def test_every_emonet_prediction_says_which_crop_it_got(data_dir, sessions) -> None:
    emonet_like = replace(FAKE_SPEC, preprocessing=replace(FAKE_SPEC.preprocessing, face_profile="emonet"))
    study_id = make_study(sessions, 2)
    with sessions.begin() as session:
        session.add(Stimulus(study_id=study_id, path="astronaut.png", sha256=store_bytes(_astronaut_png()),
                             media_type="image/png", width=512, height=512, thumbnail=b""))
    report = run(sessions, study_id, Source(), spec=emonet_like, detector="haar")
    assert report.computed == 3
    with sessions() as session:
        notes = {row.stimulus_sha256: (row.detector, row.extras["crop"]) for row in session.scalars(select(Prediction))}
        table = latest_predictions(session, study_id).set_index("stimulus")
    detected = [note for detector, note in notes.values() if detector == HAAR_VERSION]
    assert len(detected) == 1 and detected[0].startswith("fallback") and "not installed" in detected[0]
    assert sum("whole image" in note for _, note in notes.values()) == 2
    assert table.loc["astronaut.png", "note"] == detected[0]


def test_fan68_weights_must_carry_the_published_sha256_prefix(data_dir, tmp_path) -> None:
    good = checkpoints.FileHashes("11f355bf06" + "0" * 54, "", 1)
    bad = checkpoints.FileHashes("0" * 64, "", 1)
    assert checkpoints.matches(fan68.FAN_FILE, good) is None  # then pinned like an unhashed file
    assert checkpoints.matches(fan68.FAN_FILE, bad) is False
    impostor = tmp_path / fan68.FAN_FILE.name
    impostor.write_bytes(b"not the FAN weights")
    with pytest.raises(checkpoints.CheckpointError, match="sha256 starting 11f355bf06"):
        checkpoints.register_local(fan68.WEIGHTS, 1, impostor)
    assert "not installed" in fan68.unavailable_reason() or "missing" in fan68.unavailable_reason()


@pytest.mark.skipif(not fan68.package_installed(), reason="the optional face-alignment package is not installed")
def test_fan68_detector_finds_the_astronaut_with_a_landmark_box(data_dir) -> None:
    """Needs the two weight files in $FACEAGREE_WEIGHTS_DIR (registered here, hashes pinned)."""
    if os.environ.get("FACEAGREE_WEIGHTS_DIR"):
        checkpoints.register_folder(fan68.WEIGHTS, Path(os.environ["FACEAGREE_WEIGHTS_DIR"]))
    reason = fan68.unavailable_reason()
    if reason:
        pytest.skip(reason)
    image, mtcnn_face = astronaut()
    faces = fan68.load_fan68("cpu").detect(image)
    assert faces and faces[0].landmarks is None
    x1, y1, x2, y2 = faces[0].box
    mx1, my1, mx2, my2 = mtcnn_face.box
    overlap = max(0, min(x2, mx2) - max(x1, mx1)) * max(0, min(y2, my2) - max(y1, my1))
    assert overlap > 0.5 * (mx2 - mx1) * (my2 - my1)
