"""Synthetic demo stimuli: cartoon faces with visibly different expressions, plus one photo.

The cartoons are drawn, not sampled from any face data set, so the demo study can ship with the
code. Each file name carries the expression it was drawn with (``demo/happiness_01.png``); the
real photo is scikit-image's public-domain ``astronaut`` (NASA portrait of Eileen Collins).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data as skimage_data

from core.ratings.labels import CANONICAL

SIZE = 256
PHOTO_NAME = "demo/photo_astronaut.jpg"


@dataclass(frozen=True)
class Expression:
    """Geometry of one cartoon expression; all values are fractions of the face size."""

    mouth_curve: float  # > 0 smile, < 0 frown
    mouth_open: float  # height of an open mouth
    mouth_width: float
    brow_raise: float  # > 0 raised
    brow_tilt: float  # > 0 inner ends down (anger), < 0 inner ends up (sadness, fear)
    eye_open: float  # 1 normal, > 1 wide, < 1 narrowed
    smirk: float = 0.0  # one-sided lift of the right mouth corner (contempt)
    nose_wrinkle: bool = False  # disgust


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(0.0, 0.0, 0.34, 0.0, 0.0, 1.0),
    "happiness": Expression(0.16, 0.05, 0.44, 0.03, 0.0, 0.8),
    "sadness": Expression(-0.12, 0.0, 0.32, 0.02, -0.10, 0.75),
    "surprise": Expression(0.0, 0.20, 0.20, 0.12, 0.0, 1.5),
    "fear": Expression(-0.05, 0.10, 0.40, 0.10, -0.10, 1.45),
    "disgust": Expression(-0.08, 0.03, 0.34, -0.04, 0.06, 0.65, nose_wrinkle=True),
    "anger": Expression(-0.04, 0.0, 0.30, -0.06, 0.14, 0.7),
    "contempt": Expression(0.0, 0.0, 0.32, 0.0, 0.03, 0.9, smirk=0.10),
}
SKIN_TONES = ((224, 196, 170), (200, 160, 120), (150, 105, 75), (95, 65, 45), (236, 210, 190))


def demo_images(n: int = 24, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` cartoon faces cycling through the canonical emotions, then the astronaut photo.

    Returns (stimulus path, encoded bytes) pairs: PNG for cartoons, JPEG for the photo.
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    images = []
    for index in range(n):
        emotion = CANONICAL[index % len(CANONICAL)]
        number = index // len(CANONICAL) + 1
        picture = draw_face(EXPRESSIONS[emotion], rng)
        images.append((f"demo/{emotion}_{number:02d}.png", _encode(picture, ".png")))
    images.append((PHOTO_NAME, _encode(skimage_data.astronaut(), ".jpg")))
    return images


def draw_face(expression: Expression, rng: np.random.Generator) -> np.ndarray:
    """Draw one cartoon face (RGB uint8, SIZE x SIZE) with random skin, size and intensity."""
    background = tuple(int(v) for v in rng.integers(150, 245, size=3))
    canvas = np.full((SIZE, SIZE, 3), background, dtype=np.uint8)
    centre = np.array([SIZE / 2, SIZE / 2]) + rng.uniform(-10, 10, size=2)
    face = SIZE * rng.uniform(0.36, 0.42)  # half-height of the head
    intensity = rng.uniform(0.75, 1.0)
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    _draw_head(canvas, centre, face, skin)
    _draw_eyes_and_brows(canvas, centre, face, expression, intensity)
    _draw_nose(canvas, centre, face, expression)
    _draw_mouth(canvas, centre, face, expression, intensity)
    return canvas


def _pt(xy: np.ndarray) -> tuple[int, int]:
    return int(round(xy[0])), int(round(xy[1]))


def _draw_head(canvas: np.ndarray, centre: np.ndarray, face: float, skin: tuple) -> None:
    axes = (int(face * 0.8), int(face))
    cv2.ellipse(canvas, _pt(centre), axes, 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, _pt(centre), axes, 0, 0, 360, (60, 40, 30), 2, cv2.LINE_AA)
    hair = (50, 35, 25)
    cv2.ellipse(canvas, _pt(centre), axes, 0, 200, 340, hair, int(face * 0.18), cv2.LINE_AA)


def _draw_eyes_and_brows(
    canvas: np.ndarray, centre: np.ndarray, face: float, expr: Expression, intensity: float
) -> None:
    for side in (-1, 1):
        eye = centre + np.array([side * 0.32 * face, -0.2 * face])
        eye_open = 1 + (expr.eye_open - 1) * intensity
        axes = (int(0.14 * face), max(2, int(0.08 * face * eye_open)))
        cv2.ellipse(canvas, _pt(eye), axes, 0, 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.ellipse(canvas, _pt(eye), axes, 0, 0, 360, (30, 30, 30), 2, cv2.LINE_AA)
        cv2.circle(canvas, _pt(eye), max(2, int(0.05 * face)), (40, 30, 20), -1, cv2.LINE_AA)
        brow_y = -0.2 * face - 0.17 * face - expr.brow_raise * face * intensity
        tilt = expr.brow_tilt * face * intensity
        inner = centre + np.array([side * 0.14 * face, brow_y + tilt])
        outer = centre + np.array([side * 0.48 * face, brow_y - tilt * 0.5])
        thickness = max(3, int(0.05 * face))
        cv2.line(canvas, _pt(inner), _pt(outer), (40, 25, 15), thickness, cv2.LINE_AA)


def _draw_nose(canvas: np.ndarray, centre: np.ndarray, face: float, expr: Expression) -> None:
    top, tip = centre + np.array([0, -0.05 * face]), centre + np.array([0.06 * face, 0.17 * face])
    cv2.line(canvas, _pt(top), _pt(tip), (90, 60, 45), 2, cv2.LINE_AA)
    cv2.line(canvas, _pt(tip), _pt(tip + np.array([-0.1 * face, 0])), (90, 60, 45), 2, cv2.LINE_AA)
    if expr.nose_wrinkle:
        for offset in (-0.08, 0.0, 0.08):
            start = centre + np.array([-0.12 * face, (offset - 0.02) * face])
            end = centre + np.array([-0.03 * face, (offset + 0.02) * face])
            cv2.line(canvas, _pt(start), _pt(end), (90, 60, 45), 1, cv2.LINE_AA)


def _draw_mouth(
    canvas: np.ndarray, centre: np.ndarray, face: float, expr: Expression, intensity: float
) -> None:
    half = expr.mouth_width * face / 2
    y0 = centre[1] + 0.45 * face
    xs = np.linspace(-half, half, 25)
    # Parabola through the corners; corners move up for a smile, down for a frown.
    corner_lift = expr.mouth_curve * face * intensity
    ys = y0 - corner_lift * (xs / half) ** 2
    ys = ys - expr.smirk * face * intensity * np.clip(xs / half, 0, 1) ** 2
    centreline = np.stack([centre[0] + xs, ys], axis=1)
    # An open mouth is an ellipse-like opening around the curved centre line.
    gap = 0.5 * expr.mouth_open * face * intensity * np.sqrt(1 - (xs / half) ** 2)
    upper = centreline - np.stack([np.zeros_like(gap), gap], axis=1)
    lower = centreline + np.stack([np.zeros_like(gap), gap], axis=1)
    colour = (120, 30, 40)
    if expr.mouth_open > 0:
        outline = np.concatenate([upper, lower[::-1]]).round().astype(np.int32)
        cv2.fillPoly(canvas, [outline], (70, 15, 20), cv2.LINE_AA)
        cv2.polylines(canvas, [outline], True, colour, 2, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [upper.round().astype(np.int32)], False, colour, 3, cv2.LINE_AA)


def _encode(rgb: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {extension} image")
    return buffer.tobytes()
