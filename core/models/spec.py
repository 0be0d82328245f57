"""A model is data: a frozen spec that adapters turn into behaviour (cf. torchvision Weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.ratings.labels import map_label_order

CheckpointFormat = Literal[
    "pickled_module",  # whole nn.Module pickled by torch.save (EmotiEffLib .pt)
    "state_dict",  # torch.save(state_dict) zip format
    "legacy_state_dict",  # torch.save(..., _use_new_zipfile_serialization=False) (ESR-9)
    "onnx",
    "torchscript",
]
CropPolicy = Literal["tight_box", "box_margin", "aligned_5pt", "whole_image"]
VADecode = Literal["raw", "clip", "bins"]


@dataclass(frozen=True)
class CheckpointFile:
    """One file a model needs. Official files are verified before any load.

    ``sha256`` is the full hash when published/known; ``git_blob`` the git blob id of the file in
    its official repository (verifiable from the bytes alone, `git hash-object`). A file with
    neither is accepted only from a user's explicit registration, which records its sha256.
    """

    name: str
    url: str | None
    fmt: CheckpointFormat
    sha256: str | None = None
    git_blob: str | None = None
    size: int | None = None
    # Leading hex digits of the sha256 when only those are published (torch.hub's file-name
    # convention, ``name-<prefix>.ext``): a file must start with them and its full sha256 is then
    # pinned on first download or registration.
    sha256_prefix: str | None = None
    # Other official files accepted in this slot (e.g. EmotiEffLib's .pt pickle next to its ONNX
    # export); each is verified by its own hash. The first file above is the one downloaded.
    alternatives: tuple[CheckpointFile, ...] = ()


@dataclass(frozen=True)
class Preprocessing:
    """Exactly what the model saw in training. Bump ``version`` on any change: it keys the cache."""

    version: str
    input_size: tuple[int, int]  # (height, width) fed to the network
    colour: Literal["RGB", "BGR"]
    crop: CropPolicy
    crop_margin: float = 0.0
    resize: str = "pil_bilinear"
    # Pixel pipeline: x = pixels (0..255) * scale, then (x - mean) / std per channel in `colour` order.
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # Optional resize-then-centre-crop (Multitask-CNN: Resize(134), CenterCrop(112)).
    resize_short_side: int | None = None
    # Which detections a model accepts and how it rounds a box to pixels (core.models.face_profiles).
    face_profile: str = "shared"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the registry, the Models page table and the adapters need to know."""

    id: str
    name: str
    pipeline: str  # "A EmotiEffLib", "B EmoNet", ...
    adapter: str  # key into core.models.adapters
    paper: str
    license: str
    architecture: str
    pretraining: str
    training_data: str
    strategy: str
    params: int
    checkpoints: tuple[CheckpointFile, ...]
    preprocessing: Preprocessing
    native_labels: tuple[str, ...]
    outputs: frozenset[str]  # subset of {"probs", "va", "aus"}
    va_decode: VADecode = "raw"
    va_range: tuple[float, float] = (-1.0, 1.0)
    source: Literal["builtin", "card", "imported"] = "builtin"
    homepage: str = ""
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # A variant shares its base model's checkpoints and differs only in what the official code
    # does around the network (core.models.variants); the note cites the official file:line.
    variant_of: str | None = None
    variant_note: str = ""

    @property
    def canonical_labels(self) -> list[str]:
        """Native labels mapped by name onto the canonical vocabulary, in native order."""
        return map_label_order(self.native_labels)
