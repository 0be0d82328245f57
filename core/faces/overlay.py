"""Draw detected faces on a stimulus: every box, the chosen one highlighted, and 5 landmarks."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from core.faces.crops import Face

CHOSEN_COLOUR = (0, 200, 70)  # RGB green
OTHER_COLOUR = (255, 160, 0)  # RGB orange
# Left eye, right eye, nose, left and right mouth corner: distinct so a swapped order shows.
LANDMARK_COLOURS = ((255, 0, 0), (0, 90, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))


def draw_faces(image_rgb: np.ndarray, faces: Sequence[Face], chosen: int | None) -> np.ndarray:
    """A copy of ``image_rgb`` with numbered boxes and landmarks (the chosen face drawn last)."""
    canvas = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    line = max(1, round(min(canvas.shape[:2]) / 200))
    order = [i for i in range(len(faces)) if i != chosen] + ([] if chosen is None else [chosen])
    for index in order:
        colour = CHOSEN_COLOUR if index == chosen else OTHER_COLOUR
        _draw_face(canvas, faces[index], index + 1, colour, line * (2 if index == chosen else 1))
    return canvas


def _draw_face(canvas: np.ndarray, face: Face, number: int, colour: tuple, thickness: int) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    scale = max(0.4, thickness * 0.4)
    cv2.putText(
        canvas, str(number), (x1 + thickness, max(y1 - 2 * thickness, 10)),
        cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, thickness // 2), cv2.LINE_AA,
    )
    radius = max(2, thickness + 1)
    for (x, y), dot in zip(face.landmarks or (), LANDMARK_COLOURS):
        cv2.circle(canvas, (int(round(x)), int(round(y))), radius, dot, -1, cv2.LINE_AA)
