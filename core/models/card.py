"""Models without code: a model card (TOML or JSON) plus an ONNX or TorchScript file.

The card declares what an adapter would otherwise hard-code: labels in the network's own order
(mapped to canonical labels by name), the input pipeline, and where each result sits in the
outputs. ``store_model_file`` runs the file once on a blank image to check every declared output
exists with the declared width and stores it in the checkpoint cache (pinned by sha256);
``core.workflows.catalog.register_card`` then writes the ``registered_model`` row. From then on
the model runs through the same registry, checkpoint verification and prediction cache as the
built-in ones.

Output references read ``name[i]`` (one value) or ``name[a:b]`` (values a..b-1) of an output:
ONNX outputs by graph name; TorchScript outputs as ``output`` (a single tensor), ``0``, ``1``, ...
(a tuple or list) or by key (a dict). See README.md ("Adding a model") and examples/*.card.toml.

torch, onnx and the runtimes are imported where a file is run, so validating a card or listing
models does not import them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import tomllib
import warnings
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.faces.crops import Face
from core.models import checkpoints
from core.models.adapters.base import ModelOutput
from core.models.preprocess import GENERIC_CROPS, RESIZE_METHODS, prepare_face
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing
from core.ratings.labels import CANONICAL, map_label_order

if TYPE_CHECKING:
    import torch

    from core.models.runtime import OnnxNet, TorchNet

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
REF_PATTERN = re.compile(r"^\s*(?P<name>[^\[\]]+?)\s*\[\s*(?P<start>\d+)\s*(?::\s*(?P<stop>\d+)\s*)?\]\s*$")
TEXT_FIELDS = ("pipeline", "paper", "homepage", "architecture", "pretraining", "training_data", "strategy", "notes")


class CardError(ValueError):
    """Everything wrong with a card or its file, one problem per line."""


@dataclass(frozen=True)
class OutputRef:
    output: str
    start: int
    stop: int  # exclusive

    @property
    def width(self) -> int:
        return self.stop - self.start

    def take(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs[self.output][:, self.start:self.stop]

    def __str__(self) -> str:
        return f"{self.output}[{self.start}:{self.stop}]"


def parse_ref(text: str) -> OutputRef:
    match = REF_PATTERN.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not an output reference like 'output[0:8]' or 'output[8]'")
    start = int(match["start"])
    stop = int(match["stop"]) if match["stop"] is not None else start + 1
    if stop <= start:
        raise ValueError(f"{text!r} selects no values")
    return OutputRef(match["name"], start, stop)


# --- parsing and validation ---------------------------------------------------------------------


def parse_card_text(text: str | bytes) -> dict[str, Any]:
    """TOML, or JSON when the text starts with ``{``; syntax errors name the line.

    Bytes are decoded as UTF-8; a byte-order mark (Windows editors) is ignored.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CardError(f"the card is not valid TOML/JSON: it is not UTF-8 text ({exc}); "
                            "save it as UTF-8 and upload again") from exc
    text = text.removeprefix("\ufeff")
    try:
        return json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"the card is not valid TOML/JSON: {exc}") from exc
    except RecursionError as exc:
        raise CardError("the card is not valid TOML/JSON: it is nested too deeply") from exc


class _Checker:
    """Collects every problem so a user fixes the card in one round."""

    def __init__(self, card: dict[str, Any]) -> None:
        self.card = card
        self.problems: list[str] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(f"card field `{field}`: {message}")

    def get(self, field: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        node: Any = self.card
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            if required:
                self.fail(field, "is required")
            return default
        if (isinstance(node, bool) and kind is not bool) or not isinstance(node, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.fail(field, f"expected {names}, got {node!r}")
            return default
        return node

    def floats(self, field: str, default: tuple[float, ...], count: int) -> tuple[float, ...]:
        value = self.get(field, list, list(default))
        if len(value) != count or not all(_finite(v) for v in value):
            self.fail(field, f"expected {count} finite numbers, got {value!r}")
            return default
        return tuple(float(v) for v in value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_identity(c: _Checker) -> None:
    model_id = c.get("id", str, required=True)
    if model_id is not None and not ID_PATTERN.match(model_id):
        c.fail("id", f"{model_id!r} must be 1-100 characters of a-z, 0-9, '_', '.', '-' starting with a letter or digit")
    c.get("name", str, required=True)
    c.get("license", str, required=True)
    for field in TEXT_FIELDS:
        c.get(field, str)
    params = c.get("params", int)
    if params is not None and params < 0:
        c.fail("params", "must be a positive number of parameters")


def _check_file(c: _Checker) -> None:
    fmt = c.get("file.format", str, required=True)
    if fmt is not None and fmt not in FORMATS:
        c.fail("file.format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    sha = c.get("file.sha256", str)
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        c.fail("file.sha256", "must be 64 hexadecimal characters")
    c.get("file.input", str)


def _check_input(c: _Checker) -> Preprocessing | None:
    size = c.get("input.size", (int, list), required=True)
    if isinstance(size, int):
        size = [size, size]
    size_ok = size is not None and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in size)
    if size is not None and not size_ok:
        c.fail("input.size", f"expected [height, width] in pixels (8..4096), got {size!r}")
    colour = c.get("input.colour", str, required=True)
    if colour is not None and colour not in ("RGB", "BGR"):
        c.fail("input.colour", f"{colour!r} must be 'RGB' or 'BGR'")
    resize = c.get("input.resize", str, "pil_bilinear")
    if resize not in RESIZE_METHODS:
        c.fail("input.resize", f"{resize!r} is not one of {', '.join(RESIZE_METHODS)}")
    crop = c.get("input.crop", str, "tight_box")
    if crop not in GENERIC_CROPS:
        c.fail("input.crop", f"{crop!r} is not one of {', '.join(GENERIC_CROPS)}")
    margin = c.get("input.margin", (int, float), 0.0)
    if crop == "box_margin" and not 0 < margin <= 2:
        c.fail("input.margin", "box_margin needs a margin between 0 and 2 (fraction of the box per side)")
    scale = c.get("input.scale", (int, float), 1.0 / 255.0)
    if not (_finite(scale) and scale > 0):
        c.fail("input.scale", f"must be a finite number above 0, got {scale!r}")
    mean = c.floats("input.mean", (0.0, 0.0, 0.0), 3)
    std = c.floats("input.std", (1.0, 1.0, 1.0), 3)
    if any(s == 0 for s in std):
        c.fail("input.std", "must not contain 0")
    short_side = c.get("input.resize_short_side", int)
    if short_side is not None and size_ok and not max(size) <= short_side <= 4096:
        c.fail("input.resize_short_side", f"must be at least the larger side of `input.size` "
                                          f"(the centre crop is cut from it) and at most 4096, got {short_side}")
    if c.problems:
        return None
    return Preprocessing(
        version="", input_size=(size[0], size[1]), colour=colour, crop=crop, crop_margin=float(margin),
        resize=resize, scale=float(scale), mean=mean, std=std, resize_short_side=short_side,
    )


def _check_labels(c: _Checker) -> tuple[str, ...]:
    labels = c.get("labels", list, [])
    if not all(isinstance(label, str) for label in labels):
        c.fail("labels", "must be a list of label names")
        return ()
    try:
        map_label_order(labels)
    except ValueError as exc:
        c.fail("labels", f"{exc}; use the canonical names ({', '.join(CANONICAL)}) or a known synonym")
    return tuple(labels)


def _check_outputs(c: _Checker, labels: tuple[str, ...]) -> dict[str, Any]:
    layout: dict[str, Any] = {}
    for key in ("scores", "valence", "arousal"):
        text = c.get(f"outputs.{key}", str)
        if text is None:
            continue
        try:
            layout[key] = parse_ref(text)
        except ValueError as exc:
            c.fail(f"outputs.{key}", str(exc))
    kind = c.get("outputs.scores_type", str, "logits")
    if kind not in ("logits", "probabilities"):
        c.fail("outputs.scores_type", f"{kind!r} must be 'logits' or 'probabilities'")
    decode = c.get("outputs.va_decode", str, "raw")
    if decode not in ("raw", "clip", "bins"):
        c.fail("outputs.va_decode", f"{decode!r} must be 'raw', 'clip' or 'bins'")
    va_range = c.floats("outputs.va_range", (-1.0, 1.0), 2)
    if va_range[0] >= va_range[1]:
        c.fail("outputs.va_range", "must be [low, high] with low < high")
    _check_layout(c, layout, labels, decode)
    layout.update(scores_type=kind, va_decode=decode, va_range=va_range)
    return layout


def _check_layout(c: _Checker, layout: dict[str, Any], labels: tuple[str, ...], decode: str) -> None:
    if not {"scores", "valence", "arousal"} & set(layout) and not c.problems:
        c.fail("outputs", "declare `scores` and/or `valence` + `arousal`")
    if ("valence" in layout) != ("arousal" in layout):
        c.fail("outputs", "declare both `valence` and `arousal`, or neither")
    if "scores" in layout and layout["scores"].width != len(labels):
        c.fail("outputs.scores", f"selects {layout['scores'].width} values but `labels` names {len(labels)}")
    if "scores" not in layout and labels:
        c.fail("labels", "are declared but `outputs.scores` is missing")
    for key in ("valence", "arousal"):
        ref = layout.get(key)
        if ref is not None and decode == "bins" and ref.width < 2:
            c.fail(f"outputs.{key}", "va_decode 'bins' needs a slice of at least two bins, like 'output[8:28]'")
        if ref is not None and decode != "bins" and ref.width != 1:
            c.fail(f"outputs.{key}", f"va_decode {decode!r} needs one value, like 'output[8]'")


@dataclass(frozen=True)
class Card:
    """A validated card: the raw dict plus what the adapter needs."""

    data: dict[str, Any]
    preprocessing: Preprocessing
    layout: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def fmt(self) -> str:
        return self.data["file"]["format"]


def _without_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    return node


def validate_card(data: dict[str, Any]) -> Card:
    """Check every field; raises CardError listing all problems. JSON nulls count as absent."""
    data = _without_nulls(data)
    c = _Checker(data)
    _check_identity(c)
    _check_file(c)
    prep = _check_input(c)
    labels = _check_labels(c)
    layout = _check_outputs(c, labels)
    if c.problems:
        raise CardError("\n".join(c.problems))
    version = "card-" + hashlib.sha256(
        json.dumps({k: data.get(k) for k in ("input", "outputs", "labels")}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return Card(data, dataclasses.replace(prep, version=version), layout)


# --- the spec and the adapter --------------------------------------------------------------------


def _file_name(card: Card, sha256: str) -> str:
    return f"{card.id}-{sha256[:12]}{FORMATS[card.fmt]}"


def card_spec(card: Card, sha256: str) -> ModelSpec:
    data = card.data
    layout = card.layout
    outputs = {"probs"} if "scores" in layout else set()
    outputs |= {"va"} if "valence" in layout else set()
    return ModelSpec(
        id=card.id, name=data["name"], pipeline=data.get("pipeline", "card model"), adapter="card",
        paper=data.get("paper", ""), license=data["license"], architecture=data.get("architecture", ""),
        pretraining=data.get("pretraining", ""), training_data=data.get("training_data", ""),
        strategy=data.get("strategy", ""), params=int(data.get("params", 0)),
        checkpoints=(CheckpointFile(name=_file_name(card, sha256), url=None, fmt=card.fmt, sha256=sha256),),
        preprocessing=card.preprocessing, native_labels=tuple(data.get("labels", [])),
        outputs=frozenset(outputs), va_decode=layout["va_decode"], va_range=layout["va_range"],
        source="card", homepage=data.get("homepage", ""), notes=data.get("notes", ""),
        options={"layout": layout, "input_name": data["file"].get("input")},
    )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decode_va(values: np.ndarray, decode: str, va_range: tuple[float, float]) -> np.ndarray:
    """(B, n) -> (B,): the value itself, clipped to the range, or the bin-probability expectation."""
    if decode == "bins":
        centres = np.linspace(va_range[0], va_range[1], values.shape[1])
        return _softmax(values) @ centres
    column = values[:, 0]
    return np.clip(column, *va_range) if decode == "clip" else column


def decode_layout(outputs: dict[str, np.ndarray], spec: ModelSpec) -> list[ModelOutput]:
    layout = spec.options["layout"]
    labels = spec.canonical_labels
    batch = len(next(iter(outputs.values())))
    probs = label_of = valence = arousal = None
    if "scores" in layout:
        scores = layout["scores"].take(outputs).astype(np.float64)
        probs = _softmax(scores) if layout["scores_type"] == "logits" else scores / scores.sum(axis=1, keepdims=True)
        label_of = probs.argmax(axis=1)
    if "valence" in layout:
        valence = decode_va(layout["valence"].take(outputs).astype(np.float64), layout["va_decode"], layout["va_range"])
        arousal = decode_va(layout["arousal"].take(outputs).astype(np.float64), layout["va_decode"], layout["va_range"])
    return [
        ModelOutput(
            label=labels[label_of[i]] if probs is not None else None,
            probs={label: float(p) for label, p in zip(labels, probs[i])} if probs is not None else None,
            valence=float(valence[i]) if valence is not None else None,
            arousal=float(arousal[i]) if arousal is not None else None,
        )
        for i in range(batch)
    ]


def _named_outputs(result: Any) -> dict[str, np.ndarray]:
    """TorchScript results as named (B, n) arrays: a tensor is ``output``; tuples by position."""
    import torch

    from core.models.runtime import to_numpy

    if isinstance(result, torch.Tensor):
        items = {"output": result}
    elif isinstance(result, dict):
        items = {str(k): v for k, v in result.items()}
    else:
        items = {str(i): v for i, v in enumerate(result)}
    return {name: to_numpy(value).reshape(len(value), -1) for name, value in items.items()}


def prepare(spec: ModelSpec, image_rgb: np.ndarray, face: Face) -> np.ndarray:
    return prepare_face(image_rgb, face, spec.preprocessing)


class CardAdapter:
    def __init__(self, spec: ModelSpec, net: OnnxNet | TorchNet) -> None:
        self.spec = spec
        self.net = net
        self.precision = net.precision

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        return prepare(self.spec, image_rgb, face)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.spec.checkpoints[0].fmt == "onnx":
            return {name: value.reshape(len(value), -1) for name, value in self.net(batch).items()}
        return _named_outputs(self.net.run(batch))

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        return decode_layout(raw, self.spec)

    def release(self) -> None:
        self.net.release()


def load(spec: ModelSpec, paths: list[Path], device: str, half: bool) -> CardAdapter:
    from core.models.runtime import OnnxNet, TorchNet

    (path,) = paths
    if spec.checkpoints[0].fmt == "onnx":
        if half:
            raise ValueError(f"{spec.id}: ONNX card models run in fp32 only")
        return CardAdapter(spec, OnnxNet(path, device, spec.options.get("input_name")))
    return CardAdapter(spec, TorchNet(_load_torchscript(path), device, half))


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    import torch

    with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; it still loads
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


# --- registration --------------------------------------------------------------------------------


def _dry_run(spec: ModelSpec, path: Path) -> None:
    """Load the file and run it on one blank image; check each declared output fits."""
    height, width = spec.preprocessing.input_size
    try:
        adapter = load(spec, [path], "cpu", False)
        outputs = adapter.forward(np.zeros((1, 3, height, width), np.float32))
    except Exception as exc:  # any failure of a user's file is reported, never a crash
        raise CardError(f"the {spec.checkpoints[0].fmt} file could not be run on a {height}x{width} input: {exc}") from exc
    problems = []
    for key in ("scores", "valence", "arousal"):
        ref = spec.options["layout"].get(key)
        if ref is None:
            continue
        if ref.output not in outputs:
            problems.append(f"card field `outputs.{key}`: the model has no output {ref.output!r} (outputs: {', '.join(outputs)})")
        elif outputs[ref.output].shape[1] < ref.stop:
            problems.append(f"card field `outputs.{key}`: {ref} lies beyond output {ref.output!r} of width {outputs[ref.output].shape[1]}")
    adapter.release()
    if problems:
        raise CardError("\n".join(problems))


def _count_params(path: Path, fmt: str) -> int:
    if fmt == "onnx":
        import onnx

        return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer))
    return int(sum(p.numel() for p in _load_torchscript(path).parameters()))


def store_model_file(card: Card, model_file: bytes | Path) -> tuple[dict[str, Any], Path, str]:
    """Check the file against its card (sha256, one dry run) and keep it in the checkpoint cache.

    Returns the card data completed with the parameter count, the stored path and the sha256.
    """
    data = model_file if isinstance(model_file, bytes) else Path(model_file).read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    expected = card.data["file"].get("sha256")
    if expected and expected.lower() != sha256:
        raise CardError(f"card field `file.sha256`: the file's sha256 is {sha256}, the card expects {expected.lower()}")
    spec = card_spec(card, sha256)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / spec.checkpoints[0].name
        tmp.write_bytes(data)
        _dry_run(spec, tmp)
        params = card.data.get("params") or _count_params(tmp, card.fmt)
    stored = checkpoints.register_local(spec, 0, data)
    return {**card.data, "params": params}, stored, sha256
