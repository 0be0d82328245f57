"""Face profiles: crop rounding (truncation vs floor/ceil), score threshold, minimum face size,
and the face stage choosing only among the faces a profile keeps."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.faces.crops import Face, crop_box
from core.workflows.face_stage import detected, restrict
from core.models.face_profiles import PROFILES, crop_with_profile

IMAGE = np.arange(120 * 160 * 3, dtype=np.uint32).reshape(120, 160, 3).astype(np.uint8)
EMOTIEFFLIB, SHARED, ESR9 = PROFILES["emotiefflib"], PROFILES["shared"], PROFILES["esr9"]

coordinate = st.floats(min_value=0.0, max_value=150.0, allow_nan=False)


@st.composite
def boxes(draw) -> tuple[float, float, float, float]:
    x1, y1 = draw(coordinate), draw(st.floats(min_value=0.0, max_value=110.0))
    width = draw(st.floats(min_value=1.0, max_value=159.0 - x1)) if x1 < 158.0 else 1.0
    height = draw(st.floats(min_value=1.0, max_value=119.0 - y1)) if y1 < 118.0 else 1.0
    return x1, y1, min(160.0, x1 + width), min(120.0, y1 + height)


@given(boxes())
def test_truncation_is_the_official_astype_int_slice(box) -> None:
    x1, y1, x2, y2 = np.asarray(box).astype(int)
    if x2 <= x1 or y2 <= y1:
        return  # an empty official crop; ours refuses it (next test)
    np.testing.assert_array_equal(crop_with_profile(IMAGE, box, EMOTIEFFLIB), IMAGE[y1:y2, x1:x2])
    np.testing.assert_array_equal(crop_with_profile(IMAGE, box, ESR9), IMAGE[y1:y2, x1:x2])


@given(boxes())
def test_truncated_crop_lies_inside_the_floor_ceil_crop(box) -> None:
    """floor/ceil can only add one row or column per side to the truncated crop."""
    x1, y1, x2, y2 = (math.trunc(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return
    truncated = crop_with_profile(IMAGE, box, EMOTIEFFLIB)
    wide = crop_box(IMAGE, box)
    assert np.array_equal(crop_with_profile(IMAGE, box, SHARED), wide)
    assert 0 <= wide.shape[0] - truncated.shape[0] <= 1 and 0 <= wide.shape[1] - truncated.shape[1] <= 1
    left, top = math.floor(box[0]), math.floor(box[1])
    np.testing.assert_array_equal(wide[y1 - top:y1 - top + truncated.shape[0], x1 - left:x1 - left + truncated.shape[1]], truncated)


def test_integer_box_crops_agree_and_a_fractional_end_differs() -> None:
    assert np.array_equal(crop_with_profile(IMAGE, (10, 20, 50, 70), EMOTIEFFLIB), crop_box(IMAGE, (10, 20, 50, 70)))
    assert crop_with_profile(IMAGE, (10.2, 20.7, 50.5, 70.9), EMOTIEFFLIB).shape[:2] == (50, 40)
    assert crop_box(IMAGE, (10.2, 20.7, 50.5, 70.9)).shape[:2] == (51, 41)


@given(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=1.0, max_value=200.0),
       st.floats(min_value=1.0, max_value=200.0))
def test_emotiefflib_keeps_scores_above_0_9_and_faces_of_40_px(score, width, height) -> None:
    face = Face(box=(5.0, 5.0, 5.0 + width, 5.0 + height), score=score)
    assert EMOTIEFFLIB.keeps(face) == (score > 0.9 and max(width, height) >= 40.0)
    assert SHARED.keeps(face) and ESR9.keeps(face)


def test_threshold_is_strict_as_officially() -> None:
    assert not EMOTIEFFLIB.keeps(Face(box=(0, 0, 50, 50), score=0.9))
    assert EMOTIEFFLIB.keeps(Face(box=(0, 0, 50, 50), score=0.9000001))
    assert not EMOTIEFFLIB.keeps(Face(box=(0, 0, 39.9, 39.9), score=0.99))


def test_restrict_chooses_among_kept_faces_with_stored_indices() -> None:
    faces = [Face((0, 0, 100, 100), 0.8), Face((0, 0, 30, 30), 0.99), Face((0, 0, 60, 60), 0.95)]
    result = detected("sha", "mtcnn-v1", faces, "largest", (200, 200))
    assert result.chosen == 0
    profiled = restrict(result, EMOTIEFFLIB.keeps)
    assert profiled.chosen == 2 and profiled.face == faces[2]
    assert profiled.detector == "mtcnn-v1#2"  # the cache key names the stored face
    assert restrict(result, SHARED.keeps) == result
    none_kept = restrict(detected("sha", "mtcnn-v1", faces[:1], "largest", (200, 200)), EMOTIEFFLIB.keeps)
    assert none_kept.face is None


def test_precropped_stimuli_are_never_filtered() -> None:
    tiny = np.zeros((30, 30, 3), np.uint8)
    result = detected("sha", "precropped", [Face.whole_image(tiny)], "largest", (30, 30))
    assert restrict(result, EMOTIEFFLIB.keeps).face == Face.whole_image(tiny)
