"""EmotiEffLib / HSEmotion adapters (pipeline A): enet_b0_8_va_mtl, mobilevit_va_mtl, mbf_va_mtl.

Checkpoint format decision. The official ONNX exports (opset 11, input ``input``, output
``output``, dynamic batch) are the primary files: they contain only weights and a graph, need
neither timm 0.9.x nor torch, run on onnxruntime (CUDA provider when available) and were about
3x faster than torch on our CPUs. The official ``.pt`` files are whole pickled modules that only
unpickle under timm 0.9.x with ``weights_only=False``; they are accepted as an alternative in the
same slot, verified by their git blob id, then read without executing pickled code
(:mod:`core.models.pickle_weights`) and rebuilt with timm 1.x / our MobileFaceNet via
``load_state_dict(strict=True)``. The .pt route is the one that allows fp16 on CUDA.

Architecture checks instead of guesses: the final layer of each file must map the expected
feature width to 10 outputs (enet 1280, mobilevit 768, mbf 512). 768 features identify
``mobilevitv2_150``: the only timm MobileViTv2 width with 768 features (050: 256, 075: 384,
100: 512, 125: 640, 150: 768, 175: 896, 200: 1024), and with 10 outputs it has 9,833,443
parameters, matching the ~9.8 M reported. For the .pt route the strict state-dict load checks
every tensor shape.

Official preprocessing (emotiefflib/facial_analysis.py, training notebooks): MTCNN box with no
margin, RGB, torchvision ``Resize((s, s))`` on a PIL image (PIL bilinear) to 224 (112 for mbf),
ToTensor, ImageNet mean/std (0.5/0.5 for mbf). The library's ONNX engine resizes with
``cv2.resize`` (INTER_LINEAR, no antialiasing) instead: that behaviour is the ``@onnx-engine``
variant of each model; the default follows the torch engine, i.e. the training transform behind
the published numbers. Both crop as EmotiEffLib's examples do (face profile ``emotiefflib``). Decoding: outputs [0:8] are logits over Anger, Contempt,
Disgust, Fear, Happiness, Neutral, Sadness, Surprise (softmax over these eight only); [8] valence
and [9] arousal are raw linear outputs, stored raw as the official code returns them (the
maintainer suggests clipping to [-1, 1]; the agreement layer can clip, the stored value is not
altered).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.faces.crops import Face
from core.models.adapters.base import ModelOutput
from core.models.preprocess import prepare_face
from core.models.runtime import OnnxNet, TorchNet, to_numpy
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing
from core.models.variants import make_variant

if TYPE_CHECKING:
    import torch

REPO = "https://github.com/sb-ai-lab/EmotiEffLib"
COMMIT = "f1df0e8548c666d268826e50b7de107fd5553e9d"
WEIGHTS_URL = f"{REPO}/raw/{COMMIT}/models/affectnet_emotions/"
NATIVE_LABELS = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
N_OUTPUTS = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER = (
    "Savchenko (2022). Video-based frame-level facial analysis of affective behavior on mobile "
    "devices using EfficientNets. CVPR Workshops (ABAW); Savchenko (2023), HSEmotion, ABAW."
)
LICENSE = "Code Apache-2.0; weights trained on AffectNet (research-only terms)"
# Git blob ids of the official files (sb-ai-lab/EmotiEffLib at COMMIT, same bytes in
# av-savchenko/face-emotion-recognition): (onnx, pt).
GIT_BLOBS = {
    "enet_b0_8_va_mtl": ("7ce9d6dd5b82b260bc19bfe7822a6ffa1abb6011", "b7223bd1ab092a1b5a42bc04a5f4fbfe4d9f8b9b"),
    "mobilevit_va_mtl": ("bed5781a1af9924536638ac3786603e124ee900e", "d648cb1a20a5b1ab0af64192ec9be39e5cdd3961"),
    "mbf_va_mtl": ("194db927ec135679e5cd0a267c5605e2e9d68e7e", "522bdabca7c655a7abde9cfca17e3dfcceadf9a0"),
}


def _checkpoint(model_id: str) -> CheckpointFile:
    onnx_blob, pt_blob = GIT_BLOBS[model_id]
    pickled = CheckpointFile(name=f"{model_id}.pt", url=f"{WEIGHTS_URL}{model_id}.pt", fmt="pickled_module", git_blob=pt_blob)
    return CheckpointFile(
        name=f"{model_id}.onnx", url=f"{WEIGHTS_URL}onnx/{model_id}.onnx", fmt="onnx",
        git_blob=onnx_blob, alternatives=(pickled,),
    )


# emotiefflib/facial_analysis.py at COMMIT: torch engine Resize on a PIL image (lines 324-331),
# ONNX engine cv2.resize (line 403).
TORCH_ENGINE_SOURCE = "emotiefflib/facial_analysis.py:326 (torch engine: transforms.Resize on PIL, antialiased bilinear)"
ONNX_ENGINE_SOURCE = "emotiefflib/facial_analysis.py:403 (ONNX engine: cv2.resize INTER_LINEAR, no antialiasing)"


def _preprocessing(size: int, mean: tuple[float, float, float], std: tuple[float, float, float]) -> Preprocessing:
    return Preprocessing(
        version="emotiefflib-v2", input_size=(size, size), colour="RGB", crop="tight_box",
        resize="pil_bilinear", scale=1.0 / 255.0, mean=mean, std=std, face_profile="emotiefflib",
    )


_COMMON = dict(
    pipeline="A EmotiEffLib", adapter="emotiefflib", paper=PAPER, license=LICENSE,
    training_data="AffectNet (8 categories + valence/arousal)",
    strategy="Multi-task: 8-class logits + valence/arousal regression",
    native_labels=NATIVE_LABELS, outputs=frozenset({"probs", "va"}), va_decode="raw", homepage=REPO,
)
_NOTES = "ONNX primary (verified git blob, onnxruntime); official .pt accepted, read without unpickling code. V/A raw."
_DEFAULT_NOTE = (
    f"Default: {TORCH_ENGINE_SOURCE}, the training transform behind the published AffectNet "
    "numbers. Crop: EmotiEffLib face profile (min face 40, probability > 0.9, truncated box)."
)

BASE_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="enet_b0_8_va_mtl", name="EmotiEffLib EfficientNet-B0 (8 + VA)",
        architecture="EfficientNet-B0 (timm tf_efficientnet_b0) + Linear(1280, 10)",
        pretraining="VGGFace2 face identification", params=4_020_358,
        checkpoints=(_checkpoint("enet_b0_8_va_mtl"),),
        preprocessing=_preprocessing(224, IMAGENET_MEAN, IMAGENET_STD),
        notes=_NOTES, options={"timm_arch": "tf_efficientnet_b0", "feature_dim": 1280},
        variant_note=_DEFAULT_NOTE, **_COMMON,
    ),
    ModelSpec(
        id="mobilevit_va_mtl", name="EmotiEffLib MobileViTv2-1.5 (8 + VA)",
        architecture="MobileViTv2-1.5 (timm mobilevitv2_150) + Linear(768, 10)",
        pretraining="ImageNet, then VGGFace2", params=9_833_443,
        checkpoints=(_checkpoint("mobilevit_va_mtl"),),
        preprocessing=_preprocessing(224, IMAGENET_MEAN, IMAGENET_STD),
        notes=_NOTES + " Variant settled by the 768-d head check.",
        options={"timm_arch": "mobilevitv2_150", "feature_dim": 768},
        variant_note=_DEFAULT_NOTE, **_COMMON,
    ),
    ModelSpec(
        id="mbf_va_mtl", name="EmotiEffLib MobileFaceNet (8 + VA)",
        architecture="MobileFaceNet (512-d) + Linear(512, 10)",
        pretraining="VGGFace2 face identification", params=2_064_650,
        checkpoints=(_checkpoint("mbf_va_mtl"),),
        preprocessing=_preprocessing(112, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        notes=_NOTES, options={"arch": "mobilefacenet", "feature_dim": 512},
        variant_note=_DEFAULT_NOTE, **_COMMON,
    ),
)


def _onnx_engine(base: ModelSpec) -> ModelSpec:
    prep = replace(base.preprocessing, version="emotiefflib-onnx-engine-v1", resize="cv2_linear")
    note = (f"Follows {ONNX_ENGINE_SOURCE}: what EmotiEffLibRecognizer(engine='onnx') feeds the "
            f"network. Not the default: training and the published numbers used the torch transform.")
    return make_variant(base, "onnx-engine", preprocessing=prep, note=note)


SPECS: tuple[ModelSpec, ...] = (*BASE_SPECS, *(_onnx_engine(spec) for spec in BASE_SPECS))


# --- decoding ------------------------------------------------------------------------------------


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decode_outputs(output: np.ndarray, labels: list[str]) -> list[ModelOutput]:
    """(B, 10) raw outputs -> predictions: softmax over [0:8], raw valence [8], arousal [9]."""
    if output.ndim != 2 or output.shape[1] != N_OUTPUTS:
        raise ValueError(f"expected (batch, {N_OUTPUTS}) outputs, got {output.shape}")
    logits = output[:, :8].astype(np.float64)
    probs = softmax(logits)
    return [
        ModelOutput(
            label=labels[int(p.argmax())],
            probs={label: float(v) for label, v in zip(labels, p)},
            valence=float(row[8]),
            arousal=float(row[9]),
            extras={"logits": [float(v) for v in row[:8]]},
        )
        for p, row in zip(probs, output.astype(np.float64))
    ]


def prepare(spec: ModelSpec, image_rgb: np.ndarray, face: Face) -> np.ndarray:
    """The tight face crop, resized and normalised as the authors' code does."""
    return prepare_face(image_rgb, face, spec.preprocessing)


class EmotiEffLibAdapter:
    def __init__(self, spec: ModelSpec, net: OnnxNet | TorchNet) -> None:
        self.spec = spec
        self.net = net
        self.labels = spec.canonical_labels
        self.precision = net.precision

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        return prepare(self.spec, image_rgb, face)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(self.net, OnnxNet):
            return {"output": self.net(batch)["output"]}
        return {"output": to_numpy(self.net.run(batch))}

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        return decode_outputs(raw["output"], self.labels)

    def release(self) -> None:
        self.net.release()


# --- loading -------------------------------------------------------------------------------------


def check_onnx_head(path: Path, feature_dim: int) -> None:
    """The graph's last node must be the Gemm mapping ``feature_dim`` features to 10 outputs."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names != (["input"], ["output"]):
        raise ValueError(f"{path.name}: expected input 'input' and output 'output', found {names}")
    last = graph.node[-1]
    weights = {t.name: t for t in graph.initializer}
    if last.op_type != "Gemm" or len(last.input) < 2 or last.input[1] not in weights:
        raise ValueError(f"{path.name}: the graph does not end in the expected linear layer (found {last.op_type})")
    shape = numpy_helper.to_array(weights[last.input[1]]).shape
    transposed = any(a.name == "transB" and a.i == 1 for a in last.attribute)
    if (shape if transposed else shape[::-1]) != (N_OUTPUTS, feature_dim):
        raise ValueError(f"{path.name}: head maps {shape} but this model needs {feature_dim} features -> {N_OUTPUTS} outputs")


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """The architecture of ``spec`` with random weights (timm 1.x or our MobileFaceNet)."""
    import timm

    from core.models.nets.mobilefacenet import MobileFaceNetHead

    if spec.options.get("arch") == "mobilefacenet":
        return MobileFaceNetHead(N_OUTPUTS)
    return timm.create_model(spec.options["timm_arch"], pretrained=False, num_classes=N_OUTPUTS)


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The training notebooks wrap enet's classifier as Sequential(Linear): ``classifier.0.*``."""
    return {key.replace("classifier.0.", "classifier.", 1) if key.startswith("classifier.0.") else key: value
            for key, value in state.items()}


def load_pickled(spec: ModelSpec, path: Path) -> torch.nn.Module:
    """Rebuild the network from an official (hash-verified) pickled module, strictly."""
    from core.models.pickle_weights import read_pickled_module

    origin, state = read_pickled_module(path)
    network = build_network(spec)
    try:
        network.load_state_dict(_normalise_keys(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path.name} ({origin}) does not match {spec.architecture}: {exc}") from exc
    return network


def load(spec: ModelSpec, paths: list[Path], device: str, half: bool) -> EmotiEffLibAdapter:
    (path,) = paths
    if path.suffix == ".onnx":
        if half:
            raise ValueError(f"{spec.id}: the ONNX file runs in fp32 only; register the official .pt file for fp16")
        check_onnx_head(path, spec.options["feature_dim"])
        return EmotiEffLibAdapter(spec, OnnxNet(path, device, input_name="input"))
    return EmotiEffLibAdapter(spec, TorchNet(load_pickled(spec, path), device, half))

