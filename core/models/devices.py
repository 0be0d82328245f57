"""Where models run: automatic device choice, half precision rules and an fp16-vs-fp32 check.

Half precision is offered on CUDA only. CPUs gain nothing from fp16 (most kernels upcast or are
slower) and MPS support varies per operator, so asking for it elsewhere is refused with a message
rather than silently ignored: a run's precision is part of its provenance.

torch is imported inside the functions that query devices, so choosing a device on the command
line or listing choices costs no torch start-up.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.models.adapters.base import ModelOutput

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A requested device or precision that this machine cannot provide; the message says why."""


def mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """Devices usable here, best first (always ends with ``cpu``)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if mps_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(requested: str | None = "auto") -> str:
    """``auto``/None picks CUDA, then MPS, then CPU; an explicit device must exist here.

    ``cuda:1`` style indices are accepted for CUDA.
    """
    choice = (requested or "auto").strip().lower()
    if choice == "auto":
        return available_devices()[0]
    base = choice.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {requested!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if base not in available_devices():
        raise DeviceError(
            f"device {requested!r} is not available on this machine "
            f"(available: {', '.join(available_devices())}). Use --device auto or cpu."
        )
    return choice


def check_half(device: str, half: bool) -> bool:
    """Return ``half`` if the device supports it; raise a clear DeviceError otherwise."""
    if half and not device.startswith("cuda"):
        raise DeviceError(
            f"half precision (fp16) runs only on CUDA, not on {device!r}. "
            "Untick fp16 (or drop --fp16) to run in fp32."
        )
    return half


def precision_tag(half: bool) -> str:
    """Suffix of the cache key's preprocessing part: fp16 results never mix with fp32 ones."""
    return "+fp16" if half else ""


def device_label(device: str) -> str:
    """Human-readable device name for reports and the UI (GPU model name on CUDA)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def free_memory() -> None:
    """Return cached accelerator memory to the system after a model is released."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if mps_available():
        torch.mps.empty_cache()


@dataclass(frozen=True)
class PrecisionCheck:
    """How far fp16 outputs are from fp32 ones on the same prepared inputs."""

    n: int
    max_abs_valence: float | None
    max_abs_arousal: float | None
    max_abs_prob: float | None
    argmax_agreement: float | None  # share of images with the same top label

    @property
    def max_abs_va(self) -> float | None:
        values = [v for v in (self.max_abs_valence, self.max_abs_arousal) if v is not None]
        return max(values) if values else None

    def summary(self) -> str:
        parts = [f"{self.n} images"]
        if self.argmax_agreement is not None:
            parts.append(f"top label agrees on {self.argmax_agreement:.1%}")
        if self.max_abs_prob is not None:
            parts.append(f"max |Δp| {self.max_abs_prob:.4f}")
        if self.max_abs_va is not None:
            parts.append(f"max |ΔVA| {self.max_abs_va:.4f}")
        return ", ".join(parts)


def compare_outputs(reference: Sequence[ModelOutput], other: Sequence[ModelOutput]) -> PrecisionCheck:
    """Compare two decodings of the same images (e.g. fp32 reference vs fp16)."""
    if len(reference) != len(other):
        raise ValueError(f"cannot compare {len(reference)} outputs with {len(other)}")
    pairs = list(zip(reference, other))
    return PrecisionCheck(
        n=len(pairs),
        max_abs_valence=_max_abs_diff([(a.valence, b.valence) for a, b in pairs]),
        max_abs_arousal=_max_abs_diff([(a.arousal, b.arousal) for a, b in pairs]),
        max_abs_prob=_max_abs_diff(
            [(a.probs[k], b.probs.get(k)) for a, b in pairs if a.probs and b.probs for k in a.probs]
        ),
        argmax_agreement=_agreement([(a.label, b.label) for a, b in pairs]),
    )


def _max_abs_diff(pairs: list[tuple[float | None, float | None]]) -> float | None:
    diffs = [abs(a - b) if (math.isfinite(a) and math.isfinite(b)) else math.inf
             for a, b in pairs if a is not None and b is not None]
    return max(diffs) if diffs else None


def _agreement(pairs: list[tuple[str | None, str | None]]) -> float | None:
    labelled = [(a, b) for a, b in pairs if a is not None]
    return sum(a == b for a, b in labelled) / len(labelled) if labelled else None
