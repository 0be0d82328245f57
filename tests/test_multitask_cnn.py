"""Multitask-CNN (pipeline C): caffe ResNet-50 layout of the official students, strict loading,
the 5-point aligned crop, the official transform, bin decoding, ensembling and the pipeline.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data
from torchvision import transforms

from core.faces.crops import Face
from core.models import checkpoints
from core.models.adapters import multitask_cnn as mt
from core.models.nets.resnet50_ferplus import MultitaskCNN
from core.models.nets.state_dict import load_strict
from core.models.registry import load_adapter
from core.models.runtime import TorchNet
from tests.model_fakes import make_fake_checkpoint, register_surrogate
from tests.model_fakes_b import write_multitask_student

ENSEMBLE, STUDENTS = mt.SPECS[0], [spec for spec in mt.SPECS[1:] if spec.variant_of is None]
# Five points marked by hand on skimage's astronaut (eyes, nose tip, mouth corners).
ASTRONAUT_FACE = Face(
    box=(181.1, 62.2, 267.7, 172.1), score=1.0,
    landmarks=((200.0, 101.0), (245.0, 102.0), (222.0, 122.0), (204.0, 140.0), (244.0, 140.0)),
)
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# --- architecture -----------------------------------------------------------------------------------


def _official_keys() -> set[str]:
    """Keys of a student, written out from the official layer names: albanie's
    resnet50_ferplus_dag (conv1_7x7_s2, conv{2..5}_{i}_{1x1_reduce,3x3,1x1_increase[,1x1_proj]}
    each with a ``_bn``; its classifier replaced by identity) under ``backbone.model``, and
    wtomin's three ``Head``s (bn0, fc_0, bn1, fc_1) under ``classifier``."""
    layers = ["conv1_7x7_s2"]
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for i in range(1, blocks + 1):
            names = ["1x1_reduce", "3x3", "1x1_increase"] + (["1x1_proj"] if i == 1 else [])
            layers += [f"conv{stage}_{i}_{name}" for name in names]
    keys = {f"backbone.model.{layer}.weight" for layer in layers}
    keys |= {f"backbone.model.{layer}_bn.{entry}" for layer in layers for entry in BN_ENTRIES}
    for head in range(3):
        keys |= {f"classifier.{head}.{bn}.{entry}" for bn in ("bn0", "bn1") for entry in BN_ENTRIES}
        keys |= {f"classifier.{head}.{fc}.{p}" for fc in ("fc_0", "fc_1") for p in ("weight", "bias")}
    return keys


def test_state_dict_keys_are_the_official_ones() -> None:
    state = MultitaskCNN().state_dict()
    assert set(state) == _official_keys()
    assert len(state) == 360
    shapes = {
        "backbone.model.conv1_7x7_s2.weight": (64, 3, 7, 7),
        "backbone.model.conv3_1_1x1_reduce.weight": (128, 256, 1, 1),
        "backbone.model.conv5_1_1x1_proj.weight": (2048, 1024, 1, 1),
        "backbone.model.conv5_3_1x1_increase_bn.running_var": (2048,),
        "classifier.0.bn0.weight": (2048,),
        "classifier.0.fc_0.weight": (128, 2048),
        "classifier.0.fc_1.weight": (7, 128),
        "classifier.1.fc_1.weight": (8, 128),
        "classifier.2.fc_1.weight": (40, 128),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_caffe_layout_strides_and_ceil_mode_pool() -> None:
    """Caffe ResNet: stride 2 in the first 1x1 of stages 3-5 (not the 3x3), pool1 rounds up."""
    net = MultitaskCNN().backbone.model
    for stage in (3, 4, 5):
        assert getattr(net, f"conv{stage}_1_1x1_reduce").stride == (2, 2)
        assert getattr(net, f"conv{stage}_1_1x1_proj").stride == (2, 2)
        assert getattr(net, f"conv{stage}_1_3x3").stride == (1, 1)
    assert net.conv2_1_1x1_reduce.stride == (1, 1)
    assert net.pool1_3x3_s2.ceil_mode and net.pool1_3x3_s2(torch.zeros(1, 1, 56, 56)).shape[-1] == 28


def test_parameter_counts() -> None:
    """MODELS.md: 24.3 M per student; the ensemble spec counts its five students."""
    count = sum(p.numel() for p in MultitaskCNN().parameters())
    assert count == mt.STUDENT_PARAMS == 24_314_999
    assert ENSEMBLE.params == 5 * count and all(s.params == count for s in STUDENTS)


def test_specs_label_orders_and_shared_checkpoint_folder() -> None:
    assert ENSEMBLE.canonical_labels == ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert [s.id for s in mt.SPECS] == ["wtomin_mtl", *(f"wtomin_mtl_s{i}" for i in range(5)), "wtomin_mtl@jpeg100"]
    assert [c.name for c in ENSEMBLE.checkpoints] == [f"{i}.pth" for i in range(5)]
    assert {s.options["checkpoint_dir"] for s in mt.SPECS} == {"wtomin_mtl"}
    assert [s.checkpoints[0].name for s in STUDENTS] == [f"{i}.pth" for i in range(5)]


def test_registering_a_student_file_once_serves_the_ensemble_and_the_student(data_dir: Path) -> None:
    checkpoints.register_local(ENSEMBLE, 3, b"student three bytes")
    assert checkpoints.checkpoint_status(STUDENTS[3]).state == "ready"
    assert checkpoints.checkpoint_status(STUDENTS[0]).state == "missing"
    assert checkpoints.checkpoint_status(ENSEMBLE).state == "missing"


# --- loading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
def test_student_file_loads_strictly_with_or_without_dataparallel_prefix(tmp_path: Path, prefix: str) -> None:
    path = write_multitask_student(tmp_path / "0.pth", seed=1, prefix=prefix)
    net = load_strict(MultitaskCNN(), path)
    state = torch.load(path, weights_only=True)
    assert torch.equal(net.state_dict()["classifier.2.fc_1.bias"], state[f"{prefix}classifier.2.fc_1.bias"])


# --- aligned crop -------------------------------------------------------------------------------------

# A frontal face in its own frame: eyes 40 apart on y = 0, mouth corners 35 below.
CANONICAL = np.array([[-20.0, 0.0], [20.0, 0.0], [0.0, 18.0], [-15.0, 35.0], [15.0, 35.0]])


def _place(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> tuple:
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    placed = scale * points @ rotation.T + np.asarray(shift)
    return tuple(map(tuple, placed))


@settings(max_examples=60, deadline=None)
@given(
    degrees=st.floats(-60, 60), scale=st.floats(0.5, 4.0),
    shift_x=st.floats(100, 400), shift_y=st.floats(100, 400), mouth_drop=st.floats(20, 70),
)
def test_alignment_levels_the_eyes_and_frames_the_official_square(
    degrees: float, scale: float, shift_x: float, shift_y: float, mouth_drop: float,
) -> None:
    """wtomin's crop_face: eyes level; side 2 * max(eye distance, eye-to-mouth height); square
    centred half-way between eye centre and mouth centre."""
    points = CANONICAL.copy()
    points[3:, 1] = mouth_drop
    landmarks = _place(points, degrees, scale, (shift_x, shift_y))
    matrix, side = mt.alignment_matrix(landmarks)
    assert side == max(1, round(2 * scale * max(40.0, mouth_drop)))
    mapped = np.c_[np.asarray(landmarks), np.ones(5)] @ matrix.T
    assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-6)  # eyes level
    assert mapped[1, 0] > mapped[0, 0]  # and not mirrored
    eye_centre, mouth_centre = mapped[:2].mean(axis=0), mapped[3:].mean(axis=0)
    np.testing.assert_allclose((eye_centre + mouth_centre) / 2, [side / 2, side / 2], atol=1e-6)
    zoom = side / (2 * scale * max(40.0, mouth_drop))
    assert mapped[1, 0] - mapped[0, 0] == pytest.approx(40.0 * scale * zoom, rel=1e-9)
    assert mouth_centre[1] - eye_centre[1] == pytest.approx(mouth_drop * scale * zoom, rel=1e-9)


def test_aligned_pixels_of_a_rotated_synthetic_face_have_level_eyes() -> None:
    image = np.full((400, 400, 3), 200, np.uint8)
    landmarks = _place(CANONICAL, 30.0, 2.0, (200.0, 180.0))
    yy, xx = np.mgrid[:400, :400]
    for x, y in landmarks[:2]:  # dark eye discs
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = 0
    face = mt.aligned_face(image, landmarks)
    assert face.shape == (160, 160, 3)  # 2 * max(80, 70)
    dark = face[..., 0] < 100
    cols = np.argwhere(dark)
    left, right = cols[cols[:, 1] < 80], cols[cols[:, 1] >= 80]
    left_centre, right_centre = left.mean(axis=0), right.mean(axis=0)
    assert abs(left_centre[0] - right_centre[0]) < 0.5  # same row
    assert right_centre[1] - left_centre[1] == pytest.approx(80.0, abs=1.0)
    assert (left_centre[0] + 70 / 2) == pytest.approx(80.0, abs=1.0)  # eye line sits 35 px above centre


def test_degenerate_or_absurd_landmarks_are_refused() -> None:
    with pytest.raises(ValueError, match="eye landmarks coincide"):
        mt.alignment_matrix(((10.0, 10.0), (10.0, 10.0), (12.0, 15.0), (8.0, 20.0), (12.0, 20.0)))
    with pytest.raises(ValueError, match="five finite"):
        mt.alignment_matrix(((10.0, 10.0), (20.0, 10.0)))
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="check the detection"):
        mt.aligned_face(image, _place(CANONICAL, 0.0, 20.0, (25.0, 25.0)))


def test_prepare_without_landmarks_says_what_to_do() -> None:
    adapter = mt.MultitaskCNNAdapter(STUDENTS[0], students=[])
    image = data.astronaut()
    with pytest.raises(ValueError, match="five facial landmarks.*MTCNN"):
        adapter.prepare(image, Face(box=ASTRONAUT_FACE.box, score=1.0))
    with pytest.raises(ValueError, match="landmarks"):
        adapter.prepare(image, Face.whole_image(image))


def test_prepare_equals_the_official_torchvision_transform() -> None:
    """compose_transforms(meta) of the official code with imageSize 112: Resize(134),
    CenterCrop(112), ToTensor, x255, Normalize(mean=[131.0912, 103.8827, 91.4953], std=1)."""
    image = data.astronaut()
    square = mt.aligned_face(image, ASTRONAUT_FACE.landmarks)
    official = transforms.Compose([
        transforms.Resize(134), transforms.CenterCrop((112, 112)), transforms.ToTensor(),
        transforms.Lambda(lambda x: x * 255.0),
        transforms.Normalize(mean=[131.0912, 103.8827, 91.4953], std=[1, 1, 1]),
    ])(Image.fromarray(square)).numpy()
    ours = mt.MultitaskCNNAdapter(STUDENTS[0], students=[]).prepare(image, ASTRONAUT_FACE)
    assert ours.shape == (3, 112, 112) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, official, atol=1e-3)


# --- decoding -------------------------------------------------------------------------------------------


def _raw(expr: np.ndarray, va: np.ndarray, au: np.ndarray) -> dict[str, np.ndarray]:
    return {"expr": expr, "va": va, "au": au}


def test_bin_expectation_on_hand_made_logits() -> None:
    big = 60.0
    one_hot = np.zeros((3, 20))
    one_hot[0, 0] = one_hot[1, 19] = one_hot[2, 14] = big
    np.testing.assert_allclose(mt.bin_expectation(one_hot), [-1.0, 1.0, -1 + 2 * 14 / 19], atol=1e-12)
    assert mt.bin_expectation(np.zeros(20)) == pytest.approx(0.0, abs=1e-15)
    halves = np.full(20, -big)
    halves[9] = halves[10] = 0.0  # bins at -1/19 and +1/19
    assert mt.bin_expectation(halves) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    logits=st.lists(st.floats(-30, 30), min_size=20, max_size=20),
    shift=st.floats(-50, 50),
)
def test_bin_expectation_is_bounded_and_shift_invariant(logits: list[float], shift: float) -> None:
    value = mt.bin_expectation(np.asarray(logits))
    assert -1.0 <= value <= 1.0
    assert mt.bin_expectation(np.asarray(logits) + shift) == pytest.approx(value, abs=1e-9)


def test_single_student_decoding_label_order_by_name() -> None:
    """Native index 4 is 'Happiness', index 1 'Anger'; V bins first, A bins second."""
    expr = np.full((2, 1, 7), -1.0)
    expr[0, 0, 4] = 5.0
    expr[1, 0, 1] = 5.0
    va = np.full((2, 1, 40), -60.0)
    va[:, 0, 19] = 0.0   # valence +1
    va[:, 0, 20] = 0.0   # arousal -1
    au = np.zeros((2, 1, 8))
    happy, angry = mt.decode_multitask(STUDENTS[0], _raw(expr, va, au))
    assert happy.label == "happiness" and angry.label == "anger"
    assert "contempt" not in happy.probs and len(happy.probs) == 7
    assert happy.probs["happiness"] == pytest.approx(math.exp(5) / (math.exp(5) + 6 * math.exp(-1)))
    assert (happy.valence, happy.arousal) == (pytest.approx(1.0), pytest.approx(-1.0))
    assert happy.extras["au_probs"]["AU12"] == pytest.approx(0.5)
    assert happy.extras["au_occurrence"]["AU12"] == 0  # 0.5 is not above the student threshold


def test_ensemble_averages_probabilities_and_expectations_not_logits() -> None:
    expr = np.zeros((1, 2, 7))
    expr[0, 0, 0] = 6.0  # student A: confident neutral
    expr[0, 1, 0] = -6.0  # student B: confident "anything but neutral"
    va = np.zeros((1, 2, 40))
    va[0, 0, 19] = 50.0  # A: valence 1; B: uniform bins, valence 0
    au = np.zeros((1, 2, 8))
    out = mt.decode_multitask(ENSEMBLE, _raw(expr, va, au))[0]
    p_a = math.exp(6) / (math.exp(6) + 6)
    p_b = math.exp(-6) / (math.exp(-6) + 6)
    assert out.probs["neutral"] == pytest.approx((p_a + p_b) / 2)  # 0.493
    assert abs(out.probs["neutral"] - 1 / 7) > 0.3  # what averaging logits (all zero) would give
    assert out.valence == pytest.approx(0.5, abs=1e-9)
    assert out.extras["student_valence"] == [pytest.approx(1.0), pytest.approx(0.0, abs=1e-12)]


def test_ensemble_au_occurrence_uses_the_official_thresholds() -> None:
    """Best_AU_Thresholds['CNN']: AU12 0.406, every other AU below 0.16."""
    au = np.full((1, 5, 8), math.log(0.3 / 0.7))  # every student: p = 0.3
    expr, va = np.zeros((1, 5, 7)), np.zeros((1, 5, 40))
    ensemble = mt.decode_multitask(ENSEMBLE, _raw(expr, va, au))[0]
    assert ensemble.extras["au_probs"]["AU1"] == pytest.approx(0.3)
    assert ensemble.extras["au_occurrence"] == {name: int(name != "AU12") for name in mt.AU_NAMES}
    student = mt.decode_multitask(STUDENTS[0], _raw(expr[:, :1], va[:, :1], au[:, :1]))[0]
    assert set(student.extras["au_occurrence"].values()) == {0}


# --- networks -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ensemble_forward_stacks_students_and_decodes_their_mean() -> None:
    torch.manual_seed(0)
    students = [TorchNet(MultitaskCNN()) for _ in range(2)]
    adapter = mt.MultitaskCNNAdapter(ENSEMBLE, students)
    x = adapter.prepare(data.astronaut(), ASTRONAUT_FACE)[None]
    raw = adapter.forward(x)
    assert {k: v.shape for k, v in raw.items()} == {"expr": (1, 2, 7), "au": (1, 2, 8), "va": (1, 2, 40)}
    out = adapter.decode(raw)[0]
    assert out.valence == pytest.approx(np.mean(out.extras["student_valence"]))
    alone = [mt.decode_multitask(STUDENTS[0], {k: v[:, i:i + 1] for k, v in raw.items()})[0] for i in range(2)]
    assert out.probs["fear"] == pytest.approx(np.mean([s.probs["fear"] for s in alone]))
    adapter.release()


@pytest.mark.slow
def test_full_pipeline_for_a_student_with_random_weights(data_dir: Path, tmp_path: Path) -> None:
    """Fake student file -> checkpoint cache (sha256 pinned) -> registry loader -> astronaut."""
    spec = register_surrogate(STUDENTS[1], make_fake_checkpoint(STUDENTS[1], tmp_path / "downloads"))
    adapter = load_adapter(spec)
    try:
        outputs = adapter.decode(adapter.forward(adapter.prepare(data.astronaut(), ASTRONAUT_FACE)[None]))
    finally:
        adapter.release()
    (out,) = outputs
    assert out.label in spec.canonical_labels
    assert sum(out.probs.values()) == pytest.approx(1.0)
    assert -1.0 <= out.valence <= 1.0 and -1.0 <= out.arousal <= 1.0
    assert set(out.extras["au_probs"]) == set(mt.AU_NAMES)


def test_the_decoder_reads_as_many_va_bins_as_the_network_has() -> None:
    from core.models.nets import resnet50_ferplus

    assert mt.VA_BINS == resnet50_ferplus.VA_BINS and len(mt.AU_NAMES) == resnet50_ferplus.AU_COUNT
