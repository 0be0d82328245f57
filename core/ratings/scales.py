"""Declared rating scales and their mapping onto the common [-1, 1] range.

Every numeric dimension (valence, arousal) of a rating file has a declared scale; the raw value
is kept and a normalised copy ``2 * (raw - low) / (high - low) - 1`` is stored beside it, so
SAM 1-9, slider -100..100 and 0..1 ratings can be compared. Scales are declared by the user,
never inferred silently: :func:`suggest_scale` only proposes one for the user to confirm.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
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


def suggest_scale(values: Iterable[float]) -> Scale | None:
    """The narrowest preset containing every value (else the observed range), or None.

    Only a proposal for the user to confirm: values 1..6 fit a 1-7 scale but might come from a
    1-9 scale whose extremes nobody used.
    """
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return None
    low, high = float(array.min()), float(array.max())
    fitting = [p for p in PRESETS.values() if p.low <= low and high <= p.high]
    if fitting:
        return min(fitting, key=lambda preset: preset.high - preset.low)
    return Scale(low, high) if low < high else None
