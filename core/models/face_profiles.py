"""Face profiles: which shared detections a pipeline accepts and how it cuts a box into pixels.

Detection runs once per stimulus and detector (the face stage, MTCNN with a 20-px minimum face);
a profile only filters those detections and rounds the chosen box, so several pipelines share
one detection yet each crops the way its authors' code does.

- ``shared``: every detection, box cut with floor(start) / ceil(end) (the detector convention).
- ``emotiefflib``: EmotiEffLib's examples (tests/test_facial_analysis.py:41-53 and the tutorial
  notebooks at commit f1df0e8): ``MTCNN(min_face_size=40)``, faces with probability > 0.9, box
  truncated by ``astype(int)`` and sliced ``frame[y1:y2, x1:x2]``.
- ``esr9``: ESR-9's demo (controller/cvision.py:81 and :112 at commit 5980cbf): integer box
  (``astype(int)``), sliced with no margin; its detectors (dlib, Haar) have no score threshold.
- ``emonet``: EmoNet's evaluation crops around the box of 68 FAN landmarks
  (emonet/data/affecnet.py:116-126 at 49eef30), so the profile prefers the optional ``fan68``
  detector; where it cannot run, the run's own detector box is used and every prediction says
  which crop it got (:func:`crop_note`).

Residual difference, documented rather than hidden: facenet-pytorch with ``min_face_size=40``
starts its pyramid at scale 12/40 instead of 12/20, so its proposals (and hence the NMS winners
and regressed boxes) are not the 20-px run's boxes minus the small ones. Here "smaller than 40
px" means the box's longer side is under 40 px. Also, the official slice of a box that starts
left of or above the image (negative coordinate) wraps around to the image's far side in numpy;
we clip that coordinate at 0 instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.faces.crops import Face, crop_box

BoxRounding = Literal["floor_ceil", "truncate"]


@dataclass(frozen=True)
class FaceProfile:
    name: str
    min_face: float = 0.0  # px; faces whose longer side is shorter are dropped
    score_above: float | None = None  # keep faces scoring strictly above (official "> 0.9")
    rounding: BoxRounding = "floor_ceil"
    source: str = ""
    # A detector whose boxes this pipeline's official code used; taken instead of the run's
    # detector whenever it can run here (its detections are shared like any other).
    prefer_detector: str | None = None

    def keeps(self, face: Face) -> bool:
        x1, y1, x2, y2 = face.box
        if max(x2 - x1, y2 - y1) < self.min_face:
            return False
        return self.score_above is None or face.score > self.score_above


PROFILES: dict[str, FaceProfile] = {
    "shared": FaceProfile("shared", source="the face stage's own convention"),
    "emotiefflib": FaceProfile(
        "emotiefflib", min_face=40.0, score_above=0.9, rounding="truncate",
        source="EmotiEffLib tests/test_facial_analysis.py:41-53 (f1df0e8)",
    ),
    "esr9": FaceProfile(
        "esr9", rounding="truncate",
        source="ESR-9 controller/cvision.py:81,112 (5980cbf)",
    ),
    "emonet": FaceProfile(
        "emonet", prefer_detector="fan68",
        source="EmoNet emonet/data/affecnet.py:116-126 (49eef30): box of 68 FAN landmarks",
    ),
}


def get_profile(name: str) -> FaceProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown face profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def detector_for(profile: FaceProfile, run_detector: str, unavailable: str | None) -> str:
    """The detector whose faces ``profile`` crops: its preferred one unless ``unavailable`` says
    why that cannot run here, else the run's detector."""
    if profile.prefer_detector and unavailable is None:
        return profile.prefer_detector
    return run_detector


def crop_note(profile: FaceProfile, detector_version: str, unavailable: str | None) -> str | None:
    """What a prediction's face crop was cut from, for profiles that prefer another detector
    (stored with every such prediction); None for the other profiles."""
    if profile.prefer_detector is None:
        return None
    if detector_version == "precropped":
        return "pre-cropped stimulus: the whole image is the face"
    if detector_version.startswith(profile.prefer_detector):
        return f"{profile.name} crop from the {detector_version} box, as the official evaluation"
    return (f"fallback: {profile.name} crop geometry around the {detector_version} box, not the "
            f"{profile.prefer_detector} box the official evaluation used ({unavailable})")


def truncated_bounds(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """``astype(int)`` of the box (towards zero), clipped to the image: (left, top, right, bottom)."""
    left, top, right, bottom = (math.trunc(v) for v in box)
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def crop_with_profile(image: np.ndarray, box: tuple[float, float, float, float], profile: FaceProfile) -> np.ndarray:
    """The tight box crop, rounded as ``profile`` says."""
    if profile.rounding == "floor_ceil":
        return crop_box(image, box)
    height, width = image.shape[:2]
    left, top, right, bottom = truncated_bounds(box, width, height)
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {width}x{height} image")
    return image[top:bottom, left:right]
