"""Optional detector ``fan68``: S3FD boxes and 68 FAN landmarks from the face-alignment package.

EmoNet's published evaluation cropped AffectNet faces around the box of 68 FAN landmarks
(emonet/data/affecnet.py:116-126 at 49eef30: ``landmarks_fan``, box = min/max of the points),
not around a detector box. This detector gives that box: face-alignment's S3FD finds the faces,
its 2D FAN-4 network places 68 points on each, and the stored face box is the points' bounding
box (:func:`landmark_box`). The five-point ``landmarks`` of the face record stay empty, so models
that need MTCNN's five points refuse these faces with their usual message.

face-alignment (1adrianb/face-alignment, release 1.5.0) is optional and imported only when the
detector loads: its wheel requires the non-headless ``opencv-python``, which this project does
not install (README, "Face stage"). Its weights are never fetched by the package itself: they are
two files in our checkpoint folder, downloaded from the URLs the package names
(face_alignment/api.py:78, detection/sfd/sfd_detector.py:11 at v1.5.0) or registered from local
copies. Only the leading ten hex digits of their sha256 are published, in the file names
(torch.hub's ``name-<sha256 prefix>.ext`` convention); the full sha256 is not known to us and is
pinned on first download or registration (checkpoints manifest), like any unhashed checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.faces.crops import Face
from core.faces.detection import FAN68_VERSION, DetectorUnavailable, check_rgb
from core.models.spec import CheckpointFile

PACKAGE = "face_alignment"
PACKAGE_PIN = "face-alignment==1.5.0"
HOMEPAGE = "https://github.com/1adrianb/face-alignment"
_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan"

S3FD_FILE = CheckpointFile(
    name="s3fd-619a316812.pth", url=f"{_WEIGHTS_URL}/s3fd-619a316812.pth",
    fmt="state_dict", sha256_prefix="619a316812",
)
FAN_FILE = CheckpointFile(
    name="2DFAN4-11f355bf06.pth.tar", url=f"{_WEIGHTS_URL}/2DFAN4-11f355bf06.pth.tar",
    fmt="state_dict", sha256_prefix="11f355bf06",
)


@dataclass(frozen=True)
class DetectorWeights:
    """The part of a model spec the checkpoint functions read (id, files, folder, advice)."""

    id: str
    checkpoints: tuple[CheckpointFile, ...]
    homepage: str = ""
    options: dict[str, Any] = field(default_factory=dict)


WEIGHTS = DetectorWeights(
    id="fan68",
    checkpoints=(S3FD_FILE, FAN_FILE),
    homepage=HOMEPAGE,
    options={
        "checkpoint_dir": "fan68",
        "where_to_get": (
            "Both files are the ones face-alignment 1.5.0 downloads itself. Fetch them with "
            "`python -m core install-fan68`, or copy them from a machine where face-alignment "
            "ran (~/.cache/torch/hub/checkpoints/) and register them with "
            "`python -m core install-fan68 --from <folder>`. The file names carry the first "
            "ten hex digits of each sha256; the full sha256 is pinned when a file is added."
        ),
    },
)


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2): the bounding box of the landmarks, as emonet/data/affecnet.py:123-124."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] < 2 or len(points) == 0 or not np.isfinite(points[:, :2]).all():
        raise ValueError(f"expected an (n, 2) array of finite landmarks, got shape {points.shape}")
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def package_installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def unavailable_reason() -> str | None:
    """Why ``fan68`` cannot run here (package missing, weights not ready), or None when it can."""
    if not package_installed():
        return (f"the optional {PACKAGE_PIN} package is not installed (it needs the non-headless "
                "opencv-python; see the README's Face stage section)")
    from core.models import checkpoints  # the checkpoint functions only read WEIGHTS' fields

    status = checkpoints.checkpoint_status(WEIGHTS)  # type: ignore[arg-type]
    return None if status.state == "ready" else f"{status.message}. {WEIGHTS.options['where_to_get']}"


@contextlib.contextmanager
def _hub_with(files: list[Path]) -> Iterator[None]:
    """torch.hub's folder pointed, for the duration, at links to our verified files, so that
    face-alignment's ``load_file_from_url`` (utils.py:352-380) finds them and downloads nothing."""
    import torch.hub

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="fan68-hub-") as hub:
        folder = Path(hub) / "checkpoints"
        folder.mkdir()
        for path in files:
            os.symlink(path, folder / path.name)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


class Fan68Detector:
    """face-alignment's S3FD + 2D FAN-4; each face's box is its 68 landmarks' bounding box."""

    version = FAN68_VERSION

    def __init__(self, aligner: Any) -> None:
        self._aligner = aligner

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        check_rgb(image_rgb)
        landmarks, _, boxes = self._aligner.get_landmarks_from_image(image_rgb, return_bboxes=True)
        if landmarks is None:
            return []
        faces = [Face(box=landmark_box(points), score=float(box[4])) for points, box in zip(landmarks, boxes)]
        return sorted(faces, key=lambda face: -face.score)


def load_fan68(device: str = "cpu") -> Fan68Detector:
    """The detector on verified weights; raises DetectorUnavailable saying what is missing."""
    from core.models import checkpoints

    reason = unavailable_reason()
    if reason:
        raise DetectorUnavailable(f"the fan68 detector cannot run: {reason}")
    s3fd, fan = checkpoints.resolve(WEIGHTS)  # type: ignore[arg-type]  # re-hashed now
    import face_alignment

    options: dict[str, Any] = {"device": device, "face_detector": "sfd",
                               "face_detector_kwargs": {"path_to_detector": str(s3fd)}}
    if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
        options["compile"] = False  # 1.5.0 compiles by default; eager gives the same numbers
    with _hub_with([fan]):
        aligner = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **options)
    return Fan68Detector(aligner)
