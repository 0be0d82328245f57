"""EmoNet (pipeline B): architecture vs the official checkpoint layout, strict loading of the
official file format, the evaluation crop, decoding, the full pipeline, and the golden example.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from core.faces.crops import Face
from core.models import checkpoints
from core.models.adapters import emonet
from core.models.nets.emonet import EmoNet
from core.models.nets.state_dict import load_strict
from core.models.registry import load_adapter
from tests.model_fakes import make_fake_checkpoint, register_surrogate
from tests.model_fakes_b import write_emonet_checkpoint, write_multitask_student

SPEC = emonet.EMONET_8
ASTRONAUT_BOX = (181.1, 62.2, 267.7, 172.1)  # facenet-pytorch MTCNN on data.astronaut() (MODELS.md)


def key_shape_digest(state: dict[str, torch.Tensor]) -> str:
    lines = sorted(f"{key}:{tuple(value.shape)}" for key, value in state.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- architecture ---------------------------------------------------------------------------------


def test_state_dict_layout_matches_the_official_model() -> None:
    """Golden layout: instantiating the official ``emonet/models/emonet.py`` (face-analysis/emonet
    at commit 49eef30, ``EmoNet(n_expression=8)``) gives 682 state_dict entries whose sorted
    ``key:shape`` lines hash to the digest below; 111 of them are BatchNorm step counters
    (35 ConvBlocks x 3 + 2 projections + stem + 2 stack ends = 110 BatchNorm2d, 1 BatchNorm1d).
    """
    state = EmoNet().state_dict()
    assert len(state) == 682
    assert sum(key.endswith("num_batches_tracked") for key in state) == 111
    assert key_shape_digest(state) == "562c93428549cecbf051faff3ba988c8c04d3a872c45c4ce7fe184df07c47e39"
    assert state["m0.b2_plus_1.conv3.weight"].shape == (64, 64, 3, 3)
    assert state["conv1x1_input_emo_2.weight"].shape == (256, 768, 1, 1)
    assert state["emo_fc_2.3.weight"].shape == (10, 128)
    assert "bl1.weight" not in state and "bl0.weight" in state


def test_parameter_count_matches_spec_and_models_md() -> None:
    """MODELS.md: 13.96 M parameters (the official class counts 13,963,410)."""
    count = sum(p.numel() for p in EmoNet().parameters())
    assert count == SPEC.params == 13_963_410


@pytest.mark.slow
def test_forward_shapes() -> None:
    net = EmoNet().eval()
    with torch.inference_mode():
        out = net(torch.rand(1, 3, 256, 256))
    assert out["expression"].shape == (1, 8)
    assert out["valence"].shape == out["arousal"].shape == (1,)
    assert out["heatmap"].shape == (1, 68, 64, 64)


# --- loading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_step_counters", [False, True])
def test_official_file_format_loads_strictly(tmp_path: Path, drop_step_counters: bool) -> None:
    """A DataParallel-prefixed legacy-format state_dict loads with no missing/unexpected keys,
    also when written by a torch older than 0.4.1 (no BatchNorm step counters)."""
    path = write_emonet_checkpoint(tmp_path / "emonet_8.pth", seed=3)
    state = torch.load(path, weights_only=True)
    assert all(key.startswith("module.") for key in state)
    if drop_step_counters:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        torch.save(state, path, _use_new_zipfile_serialization=False)
    net = load_strict(EmoNet(), path)
    assert torch.equal(net.state_dict()["emo_fc_2.3.weight"], state["module.emo_fc_2.3.weight"])


def test_a_checkpoint_of_another_model_is_refused_with_its_name(tmp_path: Path) -> None:
    path = write_multitask_student(tmp_path / "0.pth")
    with pytest.raises(ValueError, match=r"0\.pth does not fit EmoNet.*missing keys"):
        load_strict(EmoNet(), path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "emonet_8.pth"
    path.write_text("<html>Sign in to SharePoint</html>")
    with pytest.raises(ValueError, match="not a readable PyTorch state_dict"):
        load_strict(EmoNet(), path)


# --- crop -------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    x1=st.floats(0, 300), y1=st.floats(0, 300),
    width=st.floats(10, 400), height=st.floats(10, 400),
)
def test_evaluation_crop_centres_the_box_in_a_square_of_side_w_plus_h_over_1_1(
    x1: float, y1: float, width: float, height: float,
) -> None:
    """DataAugmentor geometry: scale = (w + h) / 220, crop side = 200 * scale, box centred."""
    matrix = emonet.evaluation_crop_matrix((x1, y1, x1 + width, y1 + height))
    side = (width + height) / 1.1
    centre = matrix @ np.array([x1 + width / 2, y1 + height / 2, 1.0])
    np.testing.assert_allclose(centre, [128.0, 128.0], atol=1e-9)
    np.testing.assert_allclose(matrix[0, 0] * side, 256.0, rtol=1e-12)
    assert matrix[0, 1] == matrix[1, 0] == 0.0 and matrix[0, 0] == matrix[1, 1]


def test_evaluation_crop_pixels_show_the_box_scaled_and_black_outside_the_image() -> None:
    image = np.full((200, 300, 3), 40, np.uint8)
    image[50:150, 100:200] = 220  # the "face": a 100 x 100 box
    crop = emonet.emonet_crop(image, Face(box=(100.0, 50.0, 200.0, 150.0), score=1.0))
    bright = np.argwhere(crop[..., 0] > 130)
    extent = bright.max(axis=0) - bright.min(axis=0) + 1
    np.testing.assert_allclose(extent, 256 * 100 / (200 / 1.1), atol=2)  # ~141 px
    # A box near the border: the part of the square outside the image is zero-filled.
    corner = emonet.emonet_crop(image, Face(box=(0.0, 0.0, 60.0, 60.0), score=1.0))
    assert corner[:20, :20].max() == 0 and corner[200:, 200:].min() == 40


def test_precropped_face_goes_through_the_demo_resize() -> None:
    """demo.py: the whole face image, cv2.resize to 256 x 256 (bilinear), no margin."""
    image = data.astronaut()
    crop = emonet.emonet_crop(image, Face.whole_image(image))
    np.testing.assert_array_equal(crop, cv2.resize(image, (256, 256)))


def test_prepare_gives_rgb_in_unit_range() -> None:
    adapter = emonet.EmoNetAdapter(SPEC, net=None)  # prepare needs no network
    image = data.astronaut()
    x = adapter.prepare(image, Face(box=ASTRONAUT_BOX, score=1.0))
    assert x.shape == (3, 256, 256) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    crop = emonet.emonet_crop(image, Face(box=ASTRONAUT_BOX, score=1.0))
    np.testing.assert_allclose(x[0], crop[..., 0] / 255.0, atol=1e-6)  # channel 0 is red


def test_prepare_accepts_rgba_and_greyscale() -> None:
    adapter = emonet.EmoNetAdapter(SPEC, net=None)
    rgba = np.zeros((64, 64, 4), np.uint8)
    grey = np.zeros((64, 64), np.uint8)
    for image in (rgba, grey):
        assert adapter.prepare(image, Face.whole_image(image)).shape == (3, 256, 256)


# --- decoding ---------------------------------------------------------------------------------------


def test_decode_maps_labels_by_name_and_clamps_va_keeping_raw() -> None:
    """Native index 1 is 'Happy' -> canonical 'happiness'; index 7 'Contempt'."""
    logits = np.full((2, 8), -2.0)
    logits[0, 1] = 3.0
    logits[1, 7] = 3.0
    raw = {"expression": logits, "valence": np.array([1.7, -0.2]), "arousal": np.array([0.3, -1.4])}
    first, second = emonet.decode_emonet(SPEC, raw)
    assert first.label == "happiness" and second.label == "contempt"
    assert first.probs is not None and set(first.probs) == set(SPEC.canonical_labels)
    assert sum(first.probs.values()) == pytest.approx(1.0)
    assert first.probs["happiness"] == pytest.approx(np.exp(3) / (np.exp(3) + 7 * np.exp(-2)))
    assert (first.valence, first.arousal) == (1.0, pytest.approx(0.3))
    assert (second.valence, second.arousal) == (pytest.approx(-0.2), -1.0)
    assert first.extras["valence_raw"] == pytest.approx(1.7)
    assert second.extras["arousal_raw"] == pytest.approx(-1.4)


# --- full pipeline ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_pipeline_with_random_weights(data_dir: Path, tmp_path: Path) -> None:
    """Fake official file -> checkpoint cache (verified by its git blob) -> registry loader."""
    spec = register_surrogate(SPEC, make_fake_checkpoint(SPEC, tmp_path / "downloads"))
    adapter = load_adapter(spec)
    try:
        image = data.astronaut()
        batch = np.stack([adapter.prepare(image, Face(box=ASTRONAUT_BOX, score=1.0)),
                          adapter.prepare(image, Face.whole_image(image))])
        raw = adapter.forward(batch)
        assert set(raw) == {"expression", "valence", "arousal"}
        outputs = adapter.decode(raw)
    finally:
        adapter.release()
    assert len(outputs) == 2
    for out in outputs:
        assert out.label in SPEC.canonical_labels
        assert sum(out.probs.values()) == pytest.approx(1.0)
        assert -1.0 <= out.valence <= 1.0 and -1.0 <= out.arousal <= 1.0
    assert checkpoints.checkpoint_status(spec).state == "ready"


# --- golden (real weights) ------------------------------------------------------------------------------

WEIGHTS_ENV = "FACEAGREE_WEIGHTS_DIR"
EXAMPLE_NAME = "emonet_example.png"
EXAMPLE_GIT_BLOB = "be618b660cb2a33d41d6398b6b901c2c50fd799d"  # images/example.png, commit 49eef30


def _weights_file(name: str) -> Path | None:
    folder = os.environ.get(WEIGHTS_ENV)
    path = Path(folder) / name if folder else None
    return path if path is not None and path.is_file() else None


@pytest.mark.weights
def test_golden_official_example(data_dir: Path) -> None:
    """demo.py's documented output on images/example.png of face-analysis/emonet:
    "Predicted Emotion Happy - valence 0.064 - arousal 0.143" (printed to 3 decimals).

    Needs ``$FACEAGREE_WEIGHTS_DIR/emonet_8.pth`` (official file, checked by its git blob) and
    the official example image saved as ``$FACEAGREE_WEIGHTS_DIR/emonet_example.png``.
    """
    weights, example = _weights_file("emonet_8.pth"), _weights_file(EXAMPLE_NAME)
    if weights is None or example is None:
        pytest.skip(f"set {WEIGHTS_ENV} to a folder holding emonet_8.pth and {EXAMPLE_NAME}")
    assert checkpoints.git_blob_id(example) == EXAMPLE_GIT_BLOB, "not the official example image"
    checkpoints.register_local(SPEC, 0, weights)
    adapter = load_adapter(SPEC)
    try:
        image = np.asarray(Image.open(example))[..., :3]  # demo.py: io.imread(...)[:, :, :3]
        out = adapter.decode(adapter.forward(adapter.prepare(image, Face.whole_image(image))[None]))[0]
    finally:
        adapter.release()
    assert out.label == "happiness"
    assert out.valence == pytest.approx(0.064, abs=6e-4)
    assert out.arousal == pytest.approx(0.143, abs=6e-4)
