"""EmotiEffLib adapters: decoding by name, the official pixel pipeline, ONNX and .pt loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from core.models import checkpoints, registry
from core.models.adapters import emotiefflib
from core.models.checkpoints import CheckpointError
from core.models.pickle_weights import read_pickled_module
from core.ratings.labels import to_canonical
from tests.model_fakes import (
    astronaut,
    emotiefflib_network,
    export_onnx,
    fake_emotiefflib,
    fake_emotiefflib_pickle,
    register_surrogate,
)
from tests.test_variants import official_box_crop as truncated_crop

SPECS = {spec.id: spec for spec in emotiefflib.SPECS}
MBF = SPECS["mbf_va_mtl"]
ENET = SPECS["enet_b0_8_va_mtl"]


def test_native_order_is_the_official_one() -> None:
    """idx_to_emotion_class of emotiefflib/facial_analysis.py for 8-class models."""
    for spec in emotiefflib.SPECS:
        assert spec.native_labels == ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
        assert spec.canonical_labels == ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]


@pytest.mark.parametrize("hot", range(8))
def test_decode_maps_each_output_to_its_label_by_name(hot: int) -> None:
    output = np.zeros((1, 10), np.float32)
    output[0, hot] = 3.0
    (result,) = emotiefflib.decode_outputs(output, MBF.canonical_labels)
    assert result.label == to_canonical(MBF.native_labels[hot])
    expected = np.exp(3.0) / (np.exp(3.0) + 7)
    assert result.probs[result.label] == pytest.approx(expected)
    assert sum(result.probs.values()) == pytest.approx(1.0)


def test_softmax_covers_the_eight_logits_only_and_va_stays_raw() -> None:
    output = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 1.7, -2.5], [1, 2, 3, 4, 5, 6, 7, 8, -40, 40]], np.float32)
    first, second = emotiefflib.decode_outputs(output, ENET.canonical_labels)
    assert first.probs == pytest.approx(second.probs)
    assert first.label == "surprise"
    # official code returns the linear outputs unclipped
    assert (first.valence, first.arousal) == pytest.approx((1.7, -2.5))
    assert (second.valence, second.arousal) == (-40.0, 40.0)
    assert first.extras["logits"] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_decode_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"expected \(batch, 10\)"):
        emotiefflib.decode_outputs(np.zeros((2, 8)), MBF.canonical_labels)


@pytest.mark.parametrize("spec", [ENET, MBF], ids=lambda s: s.id)
def test_prepare_matches_the_official_torchvision_transform(spec) -> None:
    """facial_analysis.py (torch engine): Resize((s, s)) on a PIL image, ToTensor, Normalize."""
    image, face = astronaut()
    adapter = emotiefflib.EmotiEffLibAdapter(spec, net=_NoNet())
    size = spec.preprocessing.input_size[0]
    official = transforms.Compose([
        transforms.Resize((size, size)), transforms.ToTensor(),
        transforms.Normalize(mean=spec.preprocessing.mean, std=spec.preprocessing.std),
    ])(Image.fromarray(truncated_crop(image, face.box))).numpy()
    ours = adapter.prepare(image, face)
    assert ours.shape == (3, size, size) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, official, atol=1e-5)


class _NoNet:
    precision = "fp32"


def test_onnx_surrogate_through_registry_equals_torch_network(data_dir: Path, tmp_path: Path) -> None:
    surrogate = register_surrogate(MBF, fake_emotiefflib(MBF, tmp_path))
    assert checkpoints.checkpoint_status(surrogate).state == "ready"
    adapter = registry.load_adapter(surrogate)
    image, face = astronaut()
    batch = np.stack([adapter.prepare(image, face)] * 3)
    output = adapter.forward(batch)["output"]
    expected = emotiefflib_network(MBF)(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-4)
    results = adapter.decode({"output": output})
    assert len(results) == 3 and results[0].label in MBF.canonical_labels
    with pytest.raises(ValueError, match="fp32 only"):
        registry.load_adapter(surrogate, half=True)


@pytest.mark.parametrize("spec", [MBF, ENET], ids=lambda s: s.id)
def test_pickled_module_is_rebuilt_strictly(spec, data_dir: Path, tmp_path: Path) -> None:
    """The official .pt format (whole module pickled) loads without importing pickled classes."""
    path = fake_emotiefflib_pickle(spec, tmp_path)
    surrogate = register_surrogate(spec, [path])
    assert surrogate.checkpoints[0].fmt == "pickled_module"
    adapter = registry.load_adapter(surrogate)
    size = spec.preprocessing.input_size
    batch = np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32)
    expected = emotiefflib_network(spec)(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_allclose(adapter.forward(batch)["output"], expected, rtol=1e-4, atol=1e-4)
    assert adapter.precision == "fp32"


def test_pickled_module_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 10)), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="does not match MobileFaceNet"):
        emotiefflib.load_pickled(MBF, tmp_path / "x.pt")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    module = torch.nn.Linear(2, 10)
    module.payload = _Payload(marker)
    torch.save(module, tmp_path / "evil.pt")
    origin, state = read_pickled_module(tmp_path / "evil.pt")
    assert not marker.exists()
    assert origin == "torch.nn.modules.linear.Linear" and set(state) == {"weight", "bias"}


def test_unverified_pickle_is_never_opened(data_dir: Path, tmp_path: Path) -> None:
    path = fake_emotiefflib_pickle(MBF, tmp_path)
    with pytest.raises(CheckpointError, match="not the official checkpoint"):
        checkpoints.register_local(MBF, 0, path)  # published git blob ids: random weights refused
    with pytest.raises(CheckpointError, match="is missing"):
        registry.load_adapter(MBF)


def _head_only(features: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, features, 1), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(features, 10))


def test_onnx_head_check_settles_the_variant(tmp_path: Path) -> None:
    """768 features <=> mobilevitv2_150; a 640-feature (mobilevitv2_125-like) head is refused."""
    good = export_onnx(_head_only(768), (16, 16), tmp_path / "good.onnx")
    emotiefflib.check_onnx_head(good, SPECS["mobilevit_va_mtl"].options["feature_dim"])
    bad = export_onnx(_head_only(640), (16, 16), tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="needs 768 features"):
        emotiefflib.check_onnx_head(bad, 768)


def test_declared_parameter_counts_match_the_architectures() -> None:
    for spec in emotiefflib.SPECS:
        network = emotiefflib.build_network(spec).eval()
        assert sum(p.numel() for p in network.parameters()) == spec.params


# --- real weights --------------------------------------------------------------------------------

WEIGHTS_DIR = Path(os.environ.get("FACEAGREE_WEIGHTS_DIR", "/nonexistent"))
TEST_IMAGE = WEIGHTS_DIR / "20180720_174416.jpg"
GOLDEN = {  # shared/MODELS.md: argmax per MTCNN face on EmotiEffLib's tests/test_images image
    "enet_b0_8_va_mtl": ["happiness", "anger", "happiness"],
    "mbf_va_mtl": ["contempt", "anger", "fear"],
    "mobilevit_va_mtl": ["contempt", "anger", "fear"],
}


@pytest.mark.weights
@pytest.mark.parametrize("model_id", sorted(GOLDEN))
def test_golden_argmax_on_the_library_test_image(model_id: str, data_dir: Path) -> None:
    """Official weights (ONNX or .pt) and the library's test image, both in FACEAGREE_WEIGHTS_DIR.
    Compared as sorted lists: face order depends on the detector's output order."""
    spec = SPECS[model_id]
    if not TEST_IMAGE.exists() or not checkpoints.register_folder(spec, WEIGHTS_DIR):
        pytest.skip("official weights or test image not in FACEAGREE_WEIGHTS_DIR")
    from core.faces.detection import DetectorUnavailable, get_detector

    try:
        detector = get_detector("mtcnn")
    except DetectorUnavailable as exc:
        pytest.skip(str(exc))
    image = np.asarray(Image.open(TEST_IMAGE).convert("RGB"))
    faces = [f for f in detector.detect(image) if f.score > 0.9 and min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 40]
    adapter = registry.load_adapter(spec)
    batch = np.stack([adapter.prepare(image, face) for face in faces])
    labels = [r.label for r in adapter.decode(adapter.forward(batch))]
    assert sorted(labels) == sorted(GOLDEN[model_id])


def test_spec_urls_point_at_pinned_commit() -> None:
    for spec in emotiefflib.BASE_SPECS:
        slot = spec.checkpoints[0]
        assert emotiefflib.COMMIT in slot.url and slot.url.endswith(f"onnx/{spec.id}.onnx")
        assert slot.alternatives[0].url.endswith(f"affectnet_emotions/{spec.id}.pt")
