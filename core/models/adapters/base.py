"""The contract between the inference runner and every model adapter.

The runner (core.workflows.inference) owns batching, devices, caching and error handling; an adapter owns
only what is model-specific: its crop and pixel pipeline (``prepare``), the network call
(``forward``) and the decoding of raw outputs into canonical labels and valence/arousal
(``decode``). ``prepare`` runs per image on CPU; ``forward`` takes a stacked batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from core.faces.crops import Face
from core.models.spec import ModelSpec


@dataclass
class ModelOutput:
    """One decoded prediction. ``probs`` maps canonical labels (only those the model outputs)."""

    label: str | None
    probs: dict[str, float] | None
    valence: float | None
    arousal: float | None
    extras: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    spec: ModelSpec

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        """Crop and normalise one RGB uint8 image (H, W, 3) into the network's CHW float32 input."""

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on a (B, C, H, W) float32 batch; return raw outputs as numpy arrays."""

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        """Turn raw outputs of a batch into one ModelOutput per image (labels mapped by name)."""

    def release(self) -> None:
        """Free the network (and GPU memory)."""


# Loader signature: (spec, verified checkpoint paths in spec order, device string, half) -> Adapter
AdapterLoader = Callable[[ModelSpec, list[Path], str, bool], Adapter]
