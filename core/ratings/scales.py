"""Declared rating scales and their mapping onto the common [-1, 1] range.

Every numeric dimension (valence, arousal) of a rating file has a declared scale; the raw value
is kept and a normalised copy ``2 * (raw - low) / (high - low) - 1`` is stored beside it, so
SAM 1-9, slider -100..100 and 0..1 ratings can be compared. Scales are declared by the user,
never inferred silently: :func:`suggest_scale` only proposes one for the user to confirm, taken
from the study's earlier batches or from a reading of the values that flags outliers, and
:func:`scale_change` names a batch whose scale differs from the study's earlier batches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

Number = TypeVar("Number", float, np.ndarray)

# Values this close to a bound (relative to the range) count as inside: spreadsheets store
# 0.1 + 0.2 style sums and decimal-comma exports round-trip through binary floats.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Scale:
    """A closed interval ``[low, high]`` of raw values; ``name`` is the preset it came from."""

    low: float
    high: float
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"scale bounds must be finite numbers, got {self.low}..{self.high}")
        if not math.isfinite(self.high - self.low):
            raise ValueError(f"scale range {self.low:g}..{self.high:g} is too wide to compute with")
        if self.low >= self.high:
            raise ValueError(f"scale minimum {self.low:g} must be below its maximum {self.high:g}")

    @property
    def label(self) -> str:
        """Human-readable form, e.g. ``SAM 1-9 (1..9)`` or ``custom (0..10)``."""
        title = PRESET_TITLES.get(self.name, self.name)
        return f"{title} ({self.low:g}..{self.high:g})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scale:
        return cls(float(data["low"]), float(data["high"]), str(data.get("name", "custom")))


PRESETS: dict[str, Scale] = {
    "sam9": Scale(1, 9, "sam9"),
    "likert7": Scale(1, 7, "likert7"),
    "likert5": Scale(1, 5, "likert5"),
    "-100..100": Scale(-100, 100, "-100..100"),
    "0..100": Scale(0, 100, "0..100"),
    "0..1": Scale(0, 1, "0..1"),
    "-1..1": Scale(-1, 1, "-1..1"),
}
PRESET_TITLES: dict[str, str] = {
    "sam9": "SAM 1-9",
    "likert7": "1-7",
    "likert5": "1-5",
    "-100..100": "slider -100..100",
    "0..100": "slider 0..100",
    "0..1": "0..1",
    "-1..1": "-1..1",
    "custom": "custom",
}
ALIASES: dict[str, str] = {
    "sam": "sam9", "sam9": "sam9", "sam1-9": "sam9", "1-9": "sam9",
    "likert7": "likert7", "1-7": "likert7",
    "likert5": "likert5", "1-5": "likert5",
}
_NUMBER = r"[-+\u2212]?\d+(?:[.,]\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:\.\.|:|\s+to\s+)\s*({_NUMBER})\s*$", re.IGNORECASE)


def parse_scale(text: str) -> Scale:
    """Parse ``sam9``, ``1-7``, ``-100..100``, ``0..1`` or any ``MIN..MAX`` (also ``MIN:MAX``).

    Raises ValueError with the accepted forms when ``text`` is none of them.
    """
    token = text.strip().lower().replace(" ", "")
    if token in PRESETS:
        return PRESETS[token]
    if token in ALIASES:
        return PRESETS[ALIASES[token]]
    match = _RANGE.match(text)
    if match:
        low, high = (float(part.replace(",", ".").replace("\u2212", "-")) for part in match.groups())
        for preset in PRESETS.values():
            if (preset.low, preset.high) == (low, high):
                return preset
        return Scale(low, high)
    raise ValueError(
        f"unknown scale {text!r}: use one of {', '.join(PRESETS)}, 1-7, 1-5 or MIN..MAX "
        "(e.g. 0..10)"
    )


def normalise(raw: Number, scale: Scale) -> Number:
    """Map raw values on ``scale`` linearly onto [-1, 1] (low -> -1, high -> 1)."""
    return 2.0 * (raw - scale.low) / (scale.high - scale.low) - 1.0


def denormalise(value: Number, scale: Scale) -> Number:
    """Inverse of :func:`normalise`: a value in [-1, 1] back on the raw scale."""
    return scale.low + (value + 1.0) * (scale.high - scale.low) / 2.0


def out_of_scale(raw: Number, scale: Scale) -> Number | bool:
    """True where ``raw`` lies outside ``[low, high]`` (within a tiny tolerance)."""
    slack = TOLERANCE * (scale.high - scale.low)
    return (raw < scale.low - slack) | (raw > scale.high + slack)


# A suggestion may leave out at most this share of a file's values (at least one) as likely
# typos, so one valence of 12 in a 1-9 file flags the 12 instead of proposing a 0..100 slider.
OUTLIER_SHARE = 0.01
MIN_VALUES_FOR_OUTLIERS = 5


@dataclass(frozen=True)
class ScaleSuggestion:
    """A proposed scale, where it comes from, and the file's values that lie outside it."""

    scale: Scale
    source: str  # "study's earlier batches" or "values in the file"
    outliers: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        """E.g. ``SAM 1-9 (1..9), from the values in the file; 1 value outside it (12): check for typos``."""
        words = f"{self.scale.label}, from the {self.source}"
        if self.outliers:
            shown = ", ".join(f"{v:g}" for v in self.outliers[:5]) + (", ..." if len(self.outliers) > 5 else "")
            count = len(self.outliers)
            words += f"; {count} value{'s' if count > 1 else ''} outside it ({shown}): check for typos"
        return words


def _outside(values: np.ndarray, scale: Scale) -> tuple[float, ...]:
    return tuple(sorted(float(v) for v in values[out_of_scale(values, scale)]))


def suggest_scale(values: Iterable[float], earlier: Sequence[Scale] = ()) -> ScaleSuggestion | None:
    """A scale to propose for a dimension, or None when the file has no numbers.

    The study's earlier batches come first (``earlier``, most recent first: the most common one
    wins). Otherwise the narrowest preset holding all values but at most ``OUTLIER_SHARE`` of
    them, which are reported as outliers rather than stretching the scale; else the observed
    range. Only a proposal: values 1..6 fit a 1-7 scale but might come from a 1-9 scale whose
    extremes nobody used.
    """
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return None
    if earlier:
        usual = max(earlier, key=lambda scale: (earlier.count(scale), -earlier.index(scale)))
        return ScaleSuggestion(usual, "study's earlier batches", _outside(array, usual))
    allowed = max(1, int(array.size * OUTLIER_SHARE)) if array.size >= MIN_VALUES_FOR_OUTLIERS else 0
    for preset in sorted(PRESETS.values(), key=lambda preset: preset.high - preset.low):
        outliers = _outside(array, preset)
        if len(outliers) <= allowed:
            return ScaleSuggestion(preset, "values in the file", outliers)
    low, high = float(array.min()), float(array.max())
    return ScaleSuggestion(Scale(low, high), "values in the file") if low < high else None


def scale_change(dimension: str, declared: Scale, earlier: Sequence[Scale]) -> str | None:
    """Why a batch's declared scale needs confirming: it differs from the study's earlier ones."""
    bounds = {(scale.low, scale.high) for scale in earlier}
    if not earlier or (declared.low, declared.high) in bounds:
        return None
    before = ", ".join(sorted({scale.label for scale in earlier}))
    return (f"{dimension}: this batch declares {declared.label}, but earlier batches of this study "
            f"declared {before}")
