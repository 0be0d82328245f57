"""Pipeline B: EmoNet (Toisoul et al. 2021), 8 AffectNet expressions plus valence and arousal.

Crop policy (preprocessing version ``emonet-evalcrop-2``). The official code holds two crops:
``demo.py`` resizes a detector box with no margin, while the evaluation behind the published
AffectNet numbers (``test.py`` through ``DataAugmentor``) warps a square of side
``(w + h) / 1.1`` around the centre of the face box (about 1.8 times the box, zero padding
outside the image) to 256 x 256 with bilinear interpolation. Training used the same
``DataAugmentor`` geometry, so we use the evaluation crop: it is what the network learned on and
what the anchors we compare against were measured with. The evaluation box is the bounding box
of 68 FAN landmarks (emonet/data/affecnet.py:116-126); the ``emonet`` face profile takes that box
from the optional ``fan68`` detector (core.faces.fan68) when it can run, else the run's detector
box (MTCNN), and every prediction's extras["crop"] says which (version 2 adds that note).

A face whose box is the whole image (a pre-cropped stimulus) is already a face crop: it goes
through ``demo.py``'s path instead (the whole image resized to 256 x 256), which also reproduces
the official example output.

Decoding: softmax over the 8 expression logits (labels mapped by name); valence and arousal
clamped to [-1, 1] as the official demos do, raw values kept in ``extras``.

Variant ``emonet_8@eval-flip``: the official evaluation behind the published CCCs
(test.py:66 calls ``evaluate_flip``) also runs the horizontally mirrored crop
(data_augmentation.py:149-150, ``image[:, ::-1]`` after the warp) and averages the raw valence and
arousal of both passes (emonet/evaluation.py:170-172) before clipping (:175-177); expression labels
come from the unflipped pass only (:109-112; the flipped loop's expression lines are commented out,
:163-165). The base ``emonet_8`` runs one pass, as demo.py does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from core.faces.crops import Face
from core.models.adapters.base import ModelOutput
from core.models.preprocess import ensure_rgb, normalise
from core.models.runtime import TorchNet, to_numpy
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing
from core.models.variants import make_variant

if TYPE_CHECKING:
    from core.models.nets.emonet import EmoNet

INPUT_SIDE = 256
# DataAugmentor: scale = (w + h) / 220 and the crop side is 200 * scale.
CROP_SIDE_PER_BOX_SUM = 200.0 / 220.0
EMONET_PARAMS = 13_963_410
HOMEPAGE = "https://github.com/face-analysis/emonet"

PREPROCESSING = Preprocessing(
    version="emonet-evalcrop-2",
    input_size=(INPUT_SIDE, INPUT_SIDE),
    colour="RGB",
    crop="box_margin",
    # Per-side margin of the equivalent square for a square box: (200/110 - 1) / 2.
    crop_margin=round((2 * CROP_SIDE_PER_BOX_SUM - 1) / 2, 4),
    resize="cv2_linear",
    scale=1.0 / 255.0,
    face_profile="emonet",
)

CROP_NOTE = ("Crop: the evaluation geometry around the box of 68 FAN landmarks "
             "(emonet/data/affecnet.py:116-126) when the optional fan68 detector can run, else "
             "around the MTCNN box; each prediction's note says which.")

EMONET_8 = ModelSpec(
    id="emonet_8",
    name="EmoNet (8 classes)",
    pipeline="B EmoNet",
    adapter="emonet",
    paper="Toisoul, Kossaifi, Bulat, Tzimiropoulos & Pantic, Estimation of continuous valence "
          "and arousal levels from faces in naturalistic conditions, Nature Machine Intelligence 3, "
          "42-50 (2021)",
    license="CC BY-NC-ND 4.0 (code and weights: non-commercial, no derivatives; do not re-export "
            "the weights)",
    architecture="FAN face-alignment network (2 stacked hourglasses, frozen) + emotion head with "
                 "landmark-heatmap attention",
    pretraining="FAN facial landmark localisation",
    training_data="AffectNet (8 expressions, valence, arousal)",
    strategy="Single network: joint expression classification and valence/arousal regression",
    params=EMONET_PARAMS,
    checkpoints=(CheckpointFile(
        name="emonet_8.pth",
        url=f"{HOMEPAGE}/raw/master/pretrained/emonet_8.pth",
        fmt="legacy_state_dict",
        git_blob="6833bfdcf8fc761deb7630256a750cf1f7c850c1",
    ),),
    preprocessing=PREPROCESSING,
    native_labels=("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
    outputs=frozenset({"probs", "va"}),
    va_decode="clip",
    homepage=HOMEPAGE,
    notes="State dict with a DataParallel 'module.' prefix (stripped, then loaded strictly). "
          "Anchors on the authors' cleaned AffectNet test set: accuracy 0.75, CCC valence 0.82, "
          "arousal 0.75. " + CROP_NOTE,
    variant_note="Single pass, as demo.py runs the network. The published CCCs were computed with "
                 "flip averaging (test.py:66, evaluate_flip): compare against them with "
                 "emonet_8@eval-flip.",
)

EMONET_8_EVAL_FLIP = make_variant(
    EMONET_8, "eval-flip",
    preprocessing=replace(PREPROCESSING, version="emonet-evalcrop-flip-2"),
    options={"flip_average": True},
    note="Follows emonet/evaluation.py:96-177 (evaluate_flip, called at test.py:66): V/A = mean of "
         "the crop's and its mirror's raw outputs (evaluation.py:170-172), then clipped (:175-177); "
         "labels from the unflipped pass (:109-112). This is how the published CCCs (V 0.82, "
         "A 0.75) were measured.",
)

SPECS: tuple[ModelSpec, ...] = (EMONET_8, EMONET_8_EVAL_FLIP)


def is_whole_image(face: Face, image: np.ndarray) -> bool:
    """True when the face box spans the image (pre-cropped stimulus)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    return x1 <= 0.5 and y1 <= 0.5 and x2 >= width - 0.5 and y2 >= height - 0.5


def evaluation_crop_matrix(box: tuple[float, float, float, float], side: int = INPUT_SIDE) -> np.ndarray:
    """2x3 affine map from image pixels to the ``side`` x ``side`` evaluation crop of ``box``."""
    x1, y1, x2, y2 = box
    crop_side = CROP_SIDE_PER_BOX_SUM * ((x2 - x1) + (y2 - y1))
    if crop_side <= 0:
        raise ValueError(f"face box {box} is empty")
    zoom = side / crop_side
    centre_x, centre_y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[zoom, 0.0, side / 2.0 - zoom * centre_x],
                     [0.0, zoom, side / 2.0 - zoom * centre_y]])


def emonet_crop(image_rgb: np.ndarray, face: Face) -> np.ndarray:
    """The 256 x 256 uint8 RGB face the network sees (see the module docstring)."""
    image = ensure_rgb(image_rgb)
    if is_whole_image(face, image):
        return cv2.resize(image, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_LINEAR)
    matrix = evaluation_crop_matrix(face.box)
    return cv2.warpAffine(image, matrix, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def flip_averaged(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """evaluate_flip's V/A: the mean of the two passes' raw outputs, in float64."""
    return {
        "expression": raw["expression"],
        **{key: (np.asarray(raw[key], np.float64) + np.asarray(raw[f"{key}_flip"], np.float64)) / 2.0
           for key in ("valence", "arousal")},
    }


def decode_emonet(spec: ModelSpec, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
    """Expression softmax by canonical label; V/A clamped to the spec's range, raw in extras."""
    if "valence_flip" in raw:
        raw = flip_averaged(raw)
    probs = softmax(np.asarray(raw["expression"], np.float64))
    low, high = spec.va_range
    labels = spec.canonical_labels
    outputs = []
    for row, valence, arousal in zip(probs, raw["valence"], raw["arousal"], strict=True):
        outputs.append(ModelOutput(
            label=labels[int(np.argmax(row))],
            probs={label: float(p) for label, p in zip(labels, row, strict=True)},
            valence=float(np.clip(valence, low, high)),
            arousal=float(np.clip(arousal, low, high)),
            extras={"valence_raw": float(valence), "arousal_raw": float(arousal)},
        ))
    return outputs


def prepare(spec: ModelSpec, image_rgb: np.ndarray, face: Face) -> np.ndarray:
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image_rgb.dtype}")
    return normalise(emonet_crop(image_rgb, face), spec.preprocessing)


class EmoNetAdapter:
    """Runs EmoNet; see the module docstring for crop and decoding."""

    def __init__(self, spec: ModelSpec, net: TorchNet) -> None:
        self.spec = spec
        self.net = net

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        return prepare(self.spec, image_rgb, face)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = self.net.run(batch)
        # The 68 landmark heatmaps (1.1 MB per image) are not needed downstream.
        raw = {key: to_numpy(out[key]) for key in ("expression", "valence", "arousal")}
        if self.spec.options.get("flip_average"):
            mirrored = self.net.run(batch[..., ::-1])
            raw.update({f"{key}_flip": to_numpy(mirrored[key]) for key in ("valence", "arousal")})
        return raw

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        return decode_emonet(self.spec, raw)

    def release(self) -> None:
        self.net.release()


def build_network(spec: ModelSpec) -> EmoNet:
    from core.models.nets.emonet import EmoNet  # torch: only when a network is built

    return EmoNet(n_expression=len(spec.native_labels))


def load(spec: ModelSpec, paths: list[Path], device: str, half: bool) -> EmoNetAdapter:
    """Build EmoNet, load the verified state_dict strictly, move it to ``device``."""
    from core.models.nets.state_dict import load_strict

    net = load_strict(build_network(spec), paths[0])
    return EmoNetAdapter(spec, TorchNet(net, device, half))
