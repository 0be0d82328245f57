"""Declared scales: parsing, normalisation onto [-1, 1], the inverse, out-of-scale detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ratings.scales import (
    PRESETS,
    Scale,
    denormalise,
    normalise,
    out_of_scale,
    parse_scale,
    suggest_scale,
)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("sam9", 1, 9), ("SAM", 1, 9), ("1-9", 1, 9), ("1-7", 1, 7), ("likert5", 1, 5),
        ("-100..100", -100, 100), ("0..1", 0, 1), ("0..10", 0, 10), ("-3 .. 3", -3, 3),
        ("0,5..4,5", 0.5, 4.5), ("1:5", 1, 5), ("0 to 100", 0, 100),
    ],
)
def test_parse_scale_accepts_presets_and_ranges(text: str, low: float, high: float) -> None:
    scale = parse_scale(text)
    assert (scale.low, scale.high) == (low, high)


def test_parse_scale_names_the_preset_for_a_known_range() -> None:
    assert parse_scale("1..9").name == "sam9"
    assert parse_scale("0..10").name == "custom"


@pytest.mark.parametrize("text", ["", "nine", "5..1", "3..3", "1..x"])
def test_parse_scale_rejects_nonsense_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="MIN..MAX|below"):
        parse_scale(text)


def test_scale_rejects_non_finite_bounds() -> None:
    with pytest.raises(ValueError, match="finite"):
        Scale(0, float("inf"))
    with pytest.raises(ValueError, match="too wide"):
        parse_scale("-1" + "0" * 308 + "..1" + "0" * 308)  # finite bounds, infinite width


@pytest.mark.parametrize(
    ("scale", "raw", "expected"),
    [
        # SAM 1-9: 1 -> -1, 5 (the midpoint) -> 0, 9 -> 1, 3 -> -0.5 (by hand: 2*(3-1)/8-1).
        (PRESETS["sam9"], [1, 5, 9, 3], [-1, 0, 1, -0.5]),
        (PRESETS["-100..100"], [-100, 0, 50, 100], [-1, 0, 0.5, 1]),
        (PRESETS["0..1"], [0, 0.25, 1], [-1, -0.5, 1]),
        (PRESETS["likert7"], [1, 4, 7], [-1, 0, 1]),
    ],
)
def test_normalise_maps_bounds_to_minus_one_and_one(scale, raw, expected) -> None:
    assert normalise(np.array(raw, dtype=float), scale) == pytest.approx(expected)


def test_out_of_scale_is_inclusive_with_tolerance() -> None:
    scale = PRESETS["0..1"]
    values = np.array([-0.01, 0.0, 0.1 + 0.2, 1.0, 1 + 1e-12, 1.01])
    assert out_of_scale(values, scale).tolist() == [True, False, False, False, False, True]


@st.composite
def scale_and_raw(draw) -> tuple[Scale, float]:
    low = draw(st.floats(-1e4, 1e4, allow_nan=False))
    width = draw(st.floats(1e-3, 1e4, allow_nan=False))
    scale = Scale(low, low + width)
    raw = draw(st.floats(scale.low, scale.high, allow_nan=False))
    return scale, raw


@given(scale_and_raw())
def test_normalise_then_denormalise_returns_the_raw_value(case: tuple[Scale, float]) -> None:
    scale, raw = case
    value = normalise(raw, scale)
    assert -1 - 1e-9 <= value <= 1 + 1e-9
    assert denormalise(value, scale) == pytest.approx(raw, abs=1e-9 * max(1.0, abs(raw), scale.high - scale.low))


@given(st.sampled_from(list(PRESETS.values())), st.data())
def test_every_preset_round_trips_its_grid(scale: Scale, data) -> None:
    step = (scale.high - scale.low) / 8
    raw = scale.low + step * data.draw(st.integers(0, 8))
    assert denormalise(normalise(raw, scale), scale) == pytest.approx(raw)


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ([1, 2, 9], "sam9"), ([1, 7, 3], "likert7"), ([0.2, 0.9], "0..1"), ([-0.5, 0.3], "-1..1"),
        ([-80, 40], "-100..100"), ([10, 55], "0..100"), ([2, 4], "likert5"),
    ],
)
def test_suggest_scale_proposes_the_narrowest_fitting_preset(values, name) -> None:
    assert suggest_scale(values).scale.name == name


def test_suggest_scale_falls_back_to_the_observed_range_or_none() -> None:
    assert suggest_scale([]) is None
    wide = suggest_scale([-500, 300]).scale
    assert (wide.low, wide.high, wide.name) == (-500, 300, "custom")


def test_scale_round_trips_through_its_provenance_dict() -> None:
    scale = Scale(0, 10)
    assert Scale.from_dict(scale.to_dict()) == scale
    assert "custom" in scale.label and "0..10" in scale.label
