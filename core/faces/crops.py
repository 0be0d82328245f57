"""The face record shared by the face stage (detection) and every model adapter (cropping)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    box: (x1, y1, x2, y2); landmarks: five (x, y) points in MTCNN order (left eye, right eye,
    nose, left mouth corner, right mouth corner; "left" as seen in the image) or None.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @classmethod
    def whole_image(cls, image: np.ndarray) -> Face:
        """The face of a pre-cropped stimulus: the whole image, no landmarks."""
        height, width = image.shape[:2]
        return cls(box=(0.0, 0.0, float(width), float(height)), score=1.0)


def crop_box(image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.0) -> np.ndarray:
    """Cut ``box`` enlarged by ``margin`` (fraction of width/height per side), clipped to the image.

    Integer pixel bounds follow the usual detector convention: floor of the start, ceil of the end.
    """
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left = max(0, int(np.floor(x1 - dx)))
    top = max(0, int(np.floor(y1 - dy)))
    right = min(width, int(np.ceil(x2 + dx)))
    bottom = min(height, int(np.ceil(y2 + dy)))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {width}x{height} image")
    return image[top:bottom, left:right]
