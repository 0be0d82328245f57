"""Every named variant against a re-implementation of the official steps it follows.

Each test writes random weights in the official file format, loads them through the registry
(real checkpoint verification), runs our whole pipeline (prepare, forward, decode) and compares
with the official code's steps written out here from the cited file:line (EmotiEffLib f1df0e8,
ESR-9 5980cbf, EmoNet 49eef30, Multitask-CNN b8089ee). The printed ``max |diff|`` lines are the
figures quoted in the README (run with ``-s``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from core.faces.crops import Face
from core.models import registry
from core.models.adapters import emonet as emonet_adapter
from core.models.adapters import multitask_cnn as mt
from core.models.nets.emonet import EmoNet
from core.models.nets.esr9 import ESR9
from core.models.nets.resnet50_ferplus import MultitaskCNN
from core.models.nets.state_dict import load_strict
from core.models.variants import variant_role
from core.workflows import catalog
from tests.model_fakes import astronaut, emotiefflib_network, make_fake_checkpoint, register_surrogate

SPECS = registry.builtin_specs()
VARIANTS = [spec for spec in SPECS.values() if spec.variant_of]


def report(name: str, ours: np.ndarray, official: np.ndarray) -> float:
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(official, np.float64))))
    print(f"\n{name}: max |diff| = {diff:.3g}")
    return diff


def official_box_crop(frame: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """EmotiEffLib tests/test_facial_analysis.py:51-53 and ESR-9 cvision.py:81,112."""
    x1, y1, x2, y2 = np.asarray(box).astype(int)[0:4]
    return frame[y1:y2, x1:x2, :]


def second_face() -> tuple[np.ndarray, Face]:
    """Another image and box, so batched runs mix two different faces."""
    image, face = astronaut()
    return np.ascontiguousarray(image[:, ::-1]), Face(box=(244.3, 60.8, 331.9, 170.2), score=0.98)


# --- the registry -------------------------------------------------------------------------------


def test_every_variant_shares_its_base_checkpoints_and_has_its_own_cache_key() -> None:
    ids = {spec.id for spec in VARIANTS}
    assert ids == {
        "enet_b0_8_va_mtl@onnx-engine", "mobilevit_va_mtl@onnx-engine", "mbf_va_mtl@onnx-engine",
        "esr9@authors-demo", "emonet_8@eval-flip", "wtomin_mtl@jpeg100",
    }
    for spec in VARIANTS:
        base = SPECS[spec.variant_of]
        assert spec.checkpoints == base.checkpoints
        assert spec.options["checkpoint_dir"] == base.options.get("checkpoint_dir", base.id)
        assert spec.preprocessing.version != base.preprocessing.version
        assert ".py:" in spec.variant_note and base.variant_note
        assert variant_role(base, frozenset(SPECS)) == "default"
        assert variant_role(spec, frozenset(SPECS)) == f"variant of {base.id}"


def test_models_table_lists_variants_with_their_defaults() -> None:
    table = catalog.describe_models().set_index("model_id")
    assert table.loc["esr9@authors-demo", "variant"] == "variant of esr9"
    assert table.loc["esr9", "variant"] == "default"
    assert table.loc["wtomin_mtl_s0", "variant"] == ""
    assert "cvision.py:239" in table.loc["esr9@authors-demo", "variant_note"]


# --- EmotiEffLib: two engines -------------------------------------------------------------------


def official_torch_engine(crop: np.ndarray, size: int, mean, std) -> np.ndarray:
    """emotiefflib/facial_analysis.py:324-331."""
    return transforms.Compose([
        transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize(mean=mean, std=std),
    ])(Image.fromarray(crop)).numpy()


def official_onnx_engine(crop: np.ndarray, size: int, mean, std) -> np.ndarray:
    """emotiefflib/facial_analysis.py:403-406."""
    x = cv2.resize(crop, (size, size)) / 255
    for i in range(3):
        x[..., i] = (x[..., i] - mean[i]) / std[i]
    return x.transpose(2, 0, 1).astype("float32")


@pytest.mark.parametrize("base_id", ["enet_b0_8_va_mtl", "mobilevit_va_mtl", "mbf_va_mtl"])
@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_emotiefflib_engines_prepare_as_officially(base_id: str, engine: str) -> None:
    spec = SPECS[base_id if engine == "torch" else f"{base_id}@onnx-engine"]
    official_steps = official_torch_engine if engine == "torch" else official_onnx_engine
    prep = spec.preprocessing
    image, face = astronaut()
    adapter = registry.loader_module(spec).EmotiEffLibAdapter(spec, net=_NoNet())
    official = official_steps(official_box_crop(image, face.box), prep.input_size[0], prep.mean, prep.std)
    assert report(f"{spec.id} input", adapter.prepare(image, face), official) < 1e-5


@pytest.mark.slow
def test_mbf_onnx_engine_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS["mbf_va_mtl@onnx-engine"]
    adapter = registry.load_adapter(register_surrogate(spec, make_fake_checkpoint(spec, tmp_path)))
    faces = [astronaut(), second_face()]
    ours = adapter.forward(np.stack([adapter.prepare(image, face) for image, face in faces]))["output"]
    network = emotiefflib_network(spec)
    size, mean, std = spec.preprocessing.input_size[0], spec.preprocessing.mean, spec.preprocessing.std
    inputs = np.stack([official_onnx_engine(official_box_crop(i, f.box), size, mean, std) for i, f in faces])
    with torch.no_grad():
        official = network(torch.from_numpy(inputs)).numpy()
    assert report("mbf_va_mtl@onnx-engine outputs", ours, official) < 1e-4


class _NoNet:
    precision = "fp32"


# --- ESR-9: the authors' demo -------------------------------------------------------------------


def official_esr9_demo(network: ESR9, image_rgb: np.ndarray, box) -> tuple[np.ndarray, float, float]:
    """controller/cvision.py:112 crop, :205-208 preprocessing, :213-262 _predict, with the
    branches kept in train mode as a plain list leaves them (model/ml/esr_9.py:207,218)."""
    frame = image_rgb[..., ::-1]  # the demo reads frames with OpenCV: BGR
    face = official_box_crop(frame, box)
    x = transforms.ToTensor()(Image.fromarray(cv2.resize(face, (96, 96)))).unsqueeze(0)
    network.base.eval()
    branches = [branch.train() for branch in network.branches]
    with torch.no_grad():
        shared = network.base(x)
        outputs = [branch(shared) for branch in branches]
    emotion = np.array([e[0].numpy() for e, _ in outputs])
    affect = np.array([a[0].numpy() for _, a in outputs])
    affect[:, 1] = np.clip((affect[:, 1] + 1) / 2.0, 0, 1)
    valence, arousal = np.mean(affect, 0)
    votes = np.zeros(emotion.shape[1])
    for e in emotion:
        votes[np.argmax(e)] += 1
    return votes / votes.sum(), float(valence), float(arousal)


@pytest.mark.slow
def test_esr9_authors_demo_equals_the_demo_per_image(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS["esr9@authors-demo"]
    files = make_fake_checkpoint(spec, tmp_path)
    adapter = registry.load_adapter(register_surrogate(spec, files))
    faces = [astronaut(), second_face()]
    outputs = adapter.decode(adapter.forward(np.stack([adapter.prepare(i, f) for i, f in faces])))
    for (image, face), output in zip(faces, outputs):
        network = ESR9()
        for module, path in zip([network.base, *network.branches], files):
            module.load_state_dict(torch.load(path, weights_only=True))
        shares, valence, arousal = official_esr9_demo(network, image, face.box)
        ours_shares = np.array(list(output.probs.values()))
        assert report("esr9@authors-demo vote shares", ours_shares, shares) == 0
        assert report("esr9@authors-demo valence", output.valence, valence) < 1e-5
        assert report("esr9@authors-demo arousal", output.arousal, arousal) < 1e-5
        assert 0.0 <= output.arousal <= 1.0


# --- EmoNet: evaluate_flip ----------------------------------------------------------------------


@pytest.mark.slow
def test_emonet_eval_flip_equals_evaluate_flip(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS["emonet_8@eval-flip"]
    files = make_fake_checkpoint(spec, tmp_path)
    adapter = registry.load_adapter(register_surrogate(spec, files))
    image, face = astronaut()
    outputs = adapter.decode(adapter.forward(adapter.prepare(image, face)[None]))
    crop = emonet_adapter.emonet_crop(image, face)
    flipped = crop[:, ::-1]  # data_augmentation.py:149-150
    network = load_strict(EmoNet(), files[0]).eval()
    with torch.no_grad():
        plain, mirrored = (network(transforms.ToTensor()(c.copy()).unsqueeze(0)) for c in (crop, flipped))
    label = int(np.argmax(plain["expression"].numpy()))  # evaluation.py:109-112, unflipped only
    valence = np.clip((plain["valence"].double() + mirrored["valence"].double()).item() / 2.0, -1, 1)
    arousal = np.clip((plain["arousal"].double() + mirrored["arousal"].double()).item() / 2.0, -1, 1)
    assert outputs[0].label == spec.canonical_labels[label]
    assert report("emonet_8@eval-flip valence", outputs[0].valence, valence) < 1e-5
    assert report("emonet_8@eval-flip arousal", outputs[0].arousal, arousal) < 1e-5


# --- Multitask-CNN: the 100-px JPEG round trip --------------------------------------------------


def official_jpeg100_input(face_square: np.ndarray, folder: Path) -> np.ndarray:
    """MTCNN_alignment_with_video.py:207-208 (resize to 100 with Pillow's default filter, save
    as .jpg), run_pretrained_model.py:46 (open, RGB), then Resize(134), CenterCrop(112), 0..255
    minus the mean."""
    path = folder / "000001.jpg"
    Image.fromarray(face_square).resize((100, 100)).save(path)
    image = Image.open(path).convert("RGB")
    cropped = transforms.CenterCrop(112)(transforms.Resize(134)(image))
    return (np.asarray(cropped, np.float32) - np.array(mt.PREPROCESSING.mean, np.float32)).transpose(2, 0, 1)


def test_wtomin_jpeg100_prepares_as_the_alignment_script_stores(tmp_path: Path) -> None:
    spec = SPECS["wtomin_mtl@jpeg100"]
    image, face = astronaut()
    ours = mt.MultitaskCNNAdapter(spec, students=[]).prepare(image, face)
    official = official_jpeg100_input(mt.aligned_face(image, face.landmarks), tmp_path)
    assert report("wtomin_mtl@jpeg100 input", ours, official) < 1e-4
    base = mt.MultitaskCNNAdapter(SPECS["wtomin_mtl"], students=[]).prepare(image, face)
    assert np.abs(base - ours).mean() > 1.0  # the round trip does change the input


@pytest.mark.slow
def test_wtomin_jpeg100_student_outputs(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS["wtomin_mtl@jpeg100"]
    files = make_fake_checkpoint(spec, tmp_path / "weights")
    surrogate = register_surrogate(spec, files)
    adapter = registry.load_adapter(surrogate)
    image, face = astronaut()
    raw = adapter.forward(adapter.prepare(image, face)[None])
    official = official_jpeg100_input(mt.aligned_face(image, face.landmarks), tmp_path)
    network = load_strict(MultitaskCNN(), files[0]).eval()
    with torch.no_grad():
        expected = network(torch.from_numpy(official[None]))
    assert report("wtomin_mtl@jpeg100 student 0 expression logits", raw["expr"][:, 0], expected["expr"].numpy()) < 1e-3
