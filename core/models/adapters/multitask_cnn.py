"""Pipeline C: the Multitask-CNN of Deng, Chen & Shi (FG 2020 ABAW winner), five distilled
students usable alone (``wtomin_mtl_s0`` .. ``s4``) or as the official ensemble (``wtomin_mtl``).

Input (preprocessing version ``wtomin-align5pt-1``), as in the authors' alignment scripts and
``run_pretrained_model.py``: the image is rotated so that the eyes are level; the face is the
square of side ``2 * max(eye distance, eye-to-mouth height)`` centred half-way between the eye
centre and the mouth centre (one similarity warp at native resolution, zero padding outside the
image); then torchvision ``Resize(134)`` (PIL bilinear), ``CenterCrop(112)``, RGB in 0..255 minus
the VGGFace2 mean of the FER+ backbone (std 1). The crop needs the detector's five landmarks.

Decoding: expression softmax over 7 classes (no contempt); valence and arousal as the expectation
of a 20-bin softmax over bin values ``linspace(-1, 1, 20)``; action units by sigmoid. The
ensemble averages the students' probabilities and V/A expectations (the evaluation script's rule,
not the API's logit average) and thresholds the mean AU probabilities with the authors'
validation-tuned thresholds; a single student uses 0.5 as the official per-model code does.

Variant ``wtomin_mtl@jpeg100``: the authors' alignment script stores every aligned face resized
to 100 x 100 (MTCNN_alignment_with_video.py:20 and :207, PIL ``resize`` with Pillow's default
filter, bicubic since Pillow 7.0) as a JPEG (:208, Pillow's default quality 75), and
run_pretrained_model.py reads those files back (:46) before ``Resize(134)``. The variant repeats
that round trip; the base warps once at native resolution.

Pre-aligned crops (run option ``aligned_crops``, core.models.variants.declare_aligned_crops,
preprocessing version ``<version>+aligned-crops``): ``run_pretrained_model.py`` takes "a directory
containing a sequence of cropped and aligned face images" (:491-492), opens each as RGB (:62) and
applies ``Resize(int(112 * 1.2))``, ``CenterCrop(112)``, x255, minus the mean (:133-141). With the
option, a pre-cropped stimulus (no landmarks, box = whole image) gets exactly those steps and no
warp or JPEG round trip (the user's file is the stored crop); a stimulus with landmarks is still
aligned from them.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.faces.crops import Face
from core.models.adapters.base import ModelOutput
from core.models.preprocess import ensure_rgb, normalise
from core.models.runtime import TorchNet, to_numpy
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing
from core.models.variants import make_variant

STUDENTS = 5
STUDENT_PARAMS = 24_314_999
AU_NAMES: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
# Best_AU_Thresholds['CNN'] in the official run_pretrained_model.py (tuned for the 5-student mean).
ENSEMBLE_AU_THRESHOLDS: tuple[float, ...] = (
    0.1448537, 0.03918985, 0.13766725, 0.02652811, 0.40589422, 0.15572545, 0.04808964, 0.10848708,
)
STUDENT_AU_THRESHOLDS: tuple[float, ...] = (0.5,) * len(AU_NAMES)
VA_BINS = 20  # bins per dimension of the network's V/A head (nets.resnet50_ferplus.VA_BINS)
VA_BIN_VALUES = np.linspace(-1.0, 1.0, VA_BINS)
MAX_FACE_TO_IMAGE = 4.0  # landmarks implying a face far larger than the image are rejected
HOMEPAGE = "https://github.com/wtomin/Multitask-Emotion-Recognition-with-Incomplete-Labels"
WHERE_TO_GET = (
    "The five student files CNN/0.pth .. CNN/4.pth are shared on the authors' HKUST SharePoint "
    "(links in download_pretrained_weights_aff_wild2.sh and the 'Multitask-CNN' folder linked "
    f"from the README of {HOMEPAGE}); those links may have expired: ask the authors. No hash is "
    "published: each file's sha256 is pinned when you register it."
)

PREPROCESSING = Preprocessing(
    version="wtomin-align5pt-1",
    input_size=(112, 112),
    colour="RGB",
    crop="aligned_5pt",
    resize="pil_bilinear",
    scale=1.0,
    mean=(131.0912, 103.8827, 91.4953),
    std=(1.0, 1.0, 1.0),
    resize_short_side=134,
)


def _spec(model_id: str, name: str, files: tuple[int, ...], thresholds: tuple[float, ...]) -> ModelSpec:
    ensemble = len(files) > 1
    return ModelSpec(
        id=model_id,
        name=name,
        pipeline="C Multitask-CNN",
        adapter="multitask_cnn",
        paper="Deng, Chen & Shi, Multitask Emotion Recognition with Incomplete Labels, "
              "IEEE FG 2020 (ABAW challenge)",
        license="MIT (code); trained on Aff-Wild2, ExpW, DISFA and AFEW-VA (research-only data)",
        architecture="ResNet-50 (caffe layout, resnet50_ferplus_dag) + 3 MLP heads "
                     "(7 expressions, 8 AUs, 2 x 20 V/A bins)"
                     + (f"; ensemble of {len(files)} students" if ensemble else "; one student"),
        pretraining="FER+ (albanie's resnet50_ferplus_dag, VGGFace2 ResNet-50)",
        training_data="Aff-Wild2 + ExpW (expressions), DISFA (AUs), AFEW-VA (V/A), rebalanced",
        strategy="Multi-task learning from incomplete labels: teacher on ground truth, students "
                 "distilled from its soft labels"
                 + ("; mean of student probabilities and V/A" if ensemble else ""),
        params=STUDENT_PARAMS * len(files),
        checkpoints=tuple(CheckpointFile(name=f"{i}.pth", url=None, fmt="legacy_state_dict") for i in files),
        preprocessing=PREPROCESSING,
        native_labels=("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"),
        outputs=frozenset({"probs", "va", "aus"}),
        va_decode="bins",
        homepage=HOMEPAGE,
        notes=f"{STUDENT_PARAMS:,} parameters per student. Domain: Aff-Wild2 video frames.",
        # All six specs share one folder, so each student file is registered once.
        options={"checkpoint_dir": "wtomin_mtl", "where_to_get": WHERE_TO_GET,
                 "au_names": AU_NAMES, "au_thresholds": thresholds},
    )


ENSEMBLE = replace(
    _spec("wtomin_mtl", "Multitask-CNN (5-student ensemble)", tuple(range(STUDENTS)), ENSEMBLE_AU_THRESHOLDS),
    variant_note="One similarity warp at native resolution, then Resize(134)/CenterCrop(112). The "
                 "authors' own pipeline (training data and run_pretrained_model.py) reads 100-px "
                 "JPEG crops: that is wtomin_mtl@jpeg100.",
)
JPEG_SIDE = 100
JPEG_QUALITY = 75  # Pillow's default, which the alignment script's face_img.save() uses

SPECS: tuple[ModelSpec, ...] = (
    ENSEMBLE,
    *(_spec(f"wtomin_mtl_s{i}", f"Multitask-CNN student {i}", (i,), STUDENT_AU_THRESHOLDS)
      for i in range(STUDENTS)),
    make_variant(
        ENSEMBLE, "jpeg100",
        preprocessing=replace(PREPROCESSING, version="wtomin-align5pt-jpeg100-1"),
        options={"jpeg_round_trip": JPEG_SIDE},
        note="Follows MTCNN_alignment_with_video.py:20,207-208 (aligned face resized to 100 px, "
             "saved as JPEG quality 75) and run_pretrained_model.py:46 (read back) before "
             "Resize(134): the crops the students were trained and validated on.",
    ),
)


# --- aligned crop ---------------------------------------------------------------------------------


def alignment_matrix(landmarks: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, int]:
    """2x3 similarity map from image pixels to the aligned face square, and the square's side.

    Landmarks in MTCNN order: left eye, right eye, nose, left and right mouth corner ("left"
    as seen in the image).
    """
    points = np.asarray(landmarks, np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected five finite (x, y) landmarks, got {landmarks!r}")
    left_eye, right_eye, _, mouth_left, mouth_right = points
    eye_centre = (left_eye + right_eye) / 2.0
    mouth_centre = (mouth_left + mouth_right) / 2.0
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance == 0:
        raise ValueError("the two eye landmarks coincide; cannot align the face")
    cos, sin = eye_vector / eye_distance
    # Height of the mouth below the eye line, measured perpendicular to it (after levelling).
    eye_mouth_height = float(np.dot(mouth_centre - eye_centre, (-sin, cos)))
    half_side = max(eye_distance, eye_mouth_height)
    side = max(1, int(round(2.0 * half_side)))
    zoom = side / (2.0 * half_side)
    rotation = zoom * np.array([[cos, sin], [-sin, cos]])  # turns the eye line horizontal
    centre = (eye_centre + mouth_centre) / 2.0
    offset = side / 2.0 - rotation @ centre
    return np.hstack([rotation, offset[:, None]]), side


def aligned_face(image_rgb: np.ndarray, landmarks: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The eyes-level face square at native resolution (uint8 RGB)."""
    matrix, side = alignment_matrix(landmarks)
    height, width = image_rgb.shape[:2]
    if side > MAX_FACE_TO_IMAGE * max(height, width):
        raise ValueError(f"landmarks imply a {side}-px face in a {width}x{height} image; check the detection")
    return cv2.warpAffine(image_rgb, matrix, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def covers_image(face: Face, image: np.ndarray) -> bool:
    """True when the face box is the whole image (a pre-cropped stimulus)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    return x1 <= 0.5 and y1 <= 0.5 and x2 >= width - 0.5 and y2 >= height - 0.5


def jpeg_round_trip(face_rgb: np.ndarray, side: int) -> np.ndarray:
    """The alignment script's stored face: resized to ``side`` (bicubic), JPEG-encoded, decoded."""
    buffer = io.BytesIO()
    small = Image.fromarray(face_rgb).resize((side, side), Image.Resampling.BICUBIC)
    small.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize_center_crop(face_rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """torchvision Resize(short side) then CenterCrop on a PIL image, exactly as in training."""
    from torchvision.transforms import functional as tvf

    image = tvf.resize(Image.fromarray(face_rgb), prep.resize_short_side,
                       interpolation=tvf.InterpolationMode.BILINEAR)
    return np.asarray(tvf.center_crop(image, list(prep.input_size)))


# --- decoding -------------------------------------------------------------------------------------


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def bin_expectation(logits: np.ndarray) -> np.ndarray:
    """Expected value of a softmax over ``VA_BINS`` bins at ``linspace(-1, 1, VA_BINS)``."""
    return (softmax(logits) * VA_BIN_VALUES).sum(axis=-1)


def decode_multitask(spec: ModelSpec, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
    """Decode (B, S, n) student outputs; S = 1 for a single student."""
    expr, au, va = (np.asarray(raw[k], np.float64) for k in ("expr", "au", "va"))
    probs = softmax(expr).mean(axis=1)
    valence = bin_expectation(va[..., :VA_BINS])  # (B, S)
    arousal = bin_expectation(va[..., VA_BINS:])
    au_probs = (1.0 / (1.0 + np.exp(-au))).mean(axis=1)
    au_names = spec.options["au_names"]
    thresholds = np.asarray(spec.options["au_thresholds"])
    labels = spec.canonical_labels
    outputs = []
    for i in range(expr.shape[0]):
        outputs.append(ModelOutput(
            label=labels[int(np.argmax(probs[i]))],
            probs={label: float(p) for label, p in zip(labels, probs[i], strict=True)},
            valence=float(valence[i].mean()),
            arousal=float(arousal[i].mean()),
            extras={
                "au_probs": {name: float(p) for name, p in zip(au_names, au_probs[i], strict=True)},
                "au_occurrence": {
                    name: int(p > t) for name, p, t in zip(au_names, au_probs[i], thresholds, strict=True)
                },
                "student_valence": [float(v) for v in valence[i]],
                "student_arousal": [float(a) for a in arousal[i]],
            },
        ))
    return outputs


# --- adapter --------------------------------------------------------------------------------------


def prepare(spec: ModelSpec, image_rgb: np.ndarray, face: Face) -> np.ndarray:
    """The authors' five-point alignment, or an already aligned pre-cropped face."""
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image_rgb.dtype}")
    if face.landmarks is None:
        if spec.options.get("aligned_crops") and covers_image(face, image_rgb):
            return normalise(resize_center_crop(ensure_rgb(image_rgb), spec.preprocessing),
                             spec.preprocessing)
        raise ValueError(
            f"{spec.id} needs the five facial landmarks for its aligned crop, and this "
            "face has none (pre-cropped stimulus or a detector without landmarks); run the "
            "face stage with the MTCNN detector, or, if the pre-cropped stimuli are already "
            "aligned faces, run with the aligned-crops option"
        )
    face_square = aligned_face(ensure_rgb(image_rgb), face.landmarks)
    if "jpeg_round_trip" in spec.options:
        face_square = jpeg_round_trip(face_square, spec.options["jpeg_round_trip"])
    return normalise(resize_center_crop(face_square, spec.preprocessing), spec.preprocessing)


class MultitaskCNNAdapter:
    """One or several students run on the same prepared batch."""

    def __init__(self, spec: ModelSpec, students: list[TorchNet]) -> None:
        self.spec = spec
        self.students = students

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        return prepare(self.spec, image_rgb, face)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        runs = [student.run(batch) for student in self.students]
        return {key: np.stack([to_numpy(run[key]) for run in runs], axis=1) for key in ("expr", "au", "va")}

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        return decode_multitask(self.spec, raw)

    def release(self) -> None:
        for student in self.students:
            student.release()


def load(spec: ModelSpec, paths: list[Path], device: str, half: bool) -> MultitaskCNNAdapter:
    """Build one network per verified student file, each loaded strictly."""
    from core.models.nets.resnet50_ferplus import MultitaskCNN
    from core.models.nets.state_dict import load_strict

    return MultitaskCNNAdapter(spec, [TorchNet(load_strict(MultitaskCNN(), path), device, half) for path in paths])
