"""Face detectors of the face stage: MTCNN (default, 5 landmarks), a Haar cascade, pre-cropped,
and the optional ``fan68`` (face-alignment's S3FD + 68 FAN landmarks, core.faces.fan68).

MTCNN is our own implementation of the three-stage cascade of Zhang et al. (2016, "Joint Face
Detection and Alignment using Multi-task Cascaded Convolutional Networks"). It runs the weights
that facenet-pytorch 2.6.0 publishes and follows that package's pre- and post-processing step by
step (pyramid, area resampling, NMS variants, box regression, squaring, landmark decoding), so its
boxes match the crops the EmotiEffLib models were trained on. facenet-pytorch itself is not a
dependency: it pins old torch, numpy and Pillow.

The Haar cascade ships with opencv-python-headless 4.x: it works offline with no download, has no
landmarks, and its scores (cascade level weights) are not probabilities.
"""

from __future__ import annotations

import functools
import os
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from core.faces.crops import Face
from core.io.paths import data_dir
from core.io.storage import sha256_bytes, sha256_file
from core.models.spec import CheckpointFile

Progress = Callable[[int, int], None]

MTCNN_VERSION = "mtcnn-v1"
HAAR_VERSION = "haar-v2"  # v2: runs on a copy no larger than HAAR_MAX_SIDE
FAN68_VERSION = "fan68-v1"  # core.faces.fan68 (kept here so listing detectors imports nothing)
PRECROPPED = "precropped"
# Detector name -> the version string stored with its results; bump a version on any change.
DETECTOR_VERSIONS: dict[str, str] = {
    "mtcnn": MTCNN_VERSION,
    "haar": HAAR_VERSION,
    "precropped": PRECROPPED,
    "fan68": FAN68_VERSION,
}
DETECTORS = tuple(DETECTOR_VERSIONS)

# facenet-pytorch's MTCNN defaults (the reference output in MODELS.md uses them).
MIN_FACE = 20
# OpenCV's cascade tutorial runs on camera frames (640 x 480). On a 2,500 px portrait the cascade
# takes ~2 s and finds skin and hair texture as extra small "faces" (9 boxes on the 5x astronaut);
# on a copy of at most this side it takes a tenth of that and finds the one face.
HAAR_MAX_SIDE = 800
THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709

# The weight files have not changed in the repository since 2019; pin the commit anyway.
_FACENET_COMMIT = "787da06156087cd6b616fe6608213722bddc30cd"
_FACENET_RAW = f"https://raw.githubusercontent.com/timesler/facenet-pytorch/{_FACENET_COMMIT}/data"
FACENET_WHEEL = "facenet-pytorch==2.6.0"
MTCNN_FILES: tuple[CheckpointFile, ...] = (
    CheckpointFile(
        name="pnet.pt",
        url=f"{_FACENET_RAW}/pnet.pt",
        fmt="legacy_state_dict",
        sha256="a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
        git_blob="b41187335aa7bb5e53316ed05deed497d07ce185",
        size=28_570,
    ),
    CheckpointFile(
        name="rnet.pt",
        url=f"{_FACENET_RAW}/rnet.pt",
        fmt="legacy_state_dict",
        sha256="bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
        git_blob="e7dddc4f275ee01f74dbb1fd3a1185cbba32c09d",
        size=403_147,
    ),
    CheckpointFile(
        name="onet.pt",
        url=f"{_FACENET_RAW}/onet.pt",
        fmt="legacy_state_dict",
        sha256="165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        git_blob="367bdbe6e3e9aea53873b0515bfb554d7aca6182",
        size=1_559_269,
    ),
)
_WHEEL_MEMBER = "facenet_pytorch/data/{}"


class DetectorUnavailable(RuntimeError):
    """A detector cannot run (weights missing or wrong); the message says what to do."""


class Detector(Protocol):
    version: str

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces on an (H, W, 3) uint8 RGB image, most confident first."""


# ---------------------------------------------------------------------------------------------
# MTCNN weights: cache folder, verification, download, extraction from the facenet-pytorch wheel


@dataclass(frozen=True)
class WeightsStatus:
    state: Literal["ready", "missing", "mismatch"]
    message: str


def mtcnn_dir() -> Path:
    return data_dir() / "checkpoints" / "mtcnn"


def _where_to_get() -> str:
    return (
        "Download them with `python -m core install-mtcnn` or the Models page (needs internet), "
        f"or run `pip download {FACENET_WHEEL} --no-deps -d <folder>` and install the weights "
        "from that wheel with `python -m core install-mtcnn --wheel <wheel>` "
        "(core.faces.detection.install_mtcnn_from_wheel in Python). The offline "
        "'haar' detector needs no download."
    )


def _file_state(file: CheckpointFile, path: Path) -> tuple[str, str]:
    """("ready" | "missing" | "mismatch", why) for the cached copy of ``file`` at ``path``."""
    if not path.exists():
        return "missing", f"{path.name} is missing from {path.parent}"
    digest = sha256_file(path)
    if digest != file.sha256:
        return "mismatch", f"{path} has sha256 {digest}, expected {file.sha256} (a different file)"
    return "ready", ""


def mtcnn_status() -> WeightsStatus:
    """Whether all three MTCNN weight files are cached and match their published sha256."""
    states = [_file_state(f, mtcnn_dir() / f.name) for f in MTCNN_FILES]
    problems = [(state, why) for state, why in states if state != "ready"]
    if not problems:
        return WeightsStatus("ready", f"MTCNN weights verified in {mtcnn_dir()}")
    state = "mismatch" if any(state == "mismatch" for state, _ in problems) else "missing"
    return WeightsStatus(state, "; ".join(why for _, why in problems) + ". " + _where_to_get())


def _install_bytes(file: CheckpointFile, data: bytes, source: str) -> Path:
    """Verify ``data`` against the published hash, then move it into the cache atomically."""
    digest = sha256_bytes(data)
    if digest != file.sha256:
        raise DetectorUnavailable(
            f"{file.name} from {source} has sha256 {digest}, expected {file.sha256}; it was not "
            f"installed. Use the files of {FACENET_WHEEL} (or its repository)."
        )
    folder = mtcnn_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    target = folder / file.name
    os.replace(tmp, target)
    return target


def _fetch(url: str, on_chunk: Callable[[int], None]) -> bytes:
    chunks = []
    with urllib.request.urlopen(url, timeout=60) as response:
        for chunk in iter(lambda: response.read(1 << 16), b""):
            chunks.append(chunk)
            on_chunk(len(chunk))
    return b"".join(chunks)


def download_mtcnn(
    progress: Progress | None = None, *, files: Sequence[CheckpointFile] = MTCNN_FILES
) -> list[Path]:
    """Download the MTCNN weights that are missing or wrong; each is verified before it is kept."""
    todo = [f for f in files if _file_state(f, mtcnn_dir() / f.name)[0] != "ready"]
    total = sum(f.size or 0 for f in todo)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done, total), total)

    for file in todo:
        try:
            data = _fetch(file.url, advance)
        except OSError as error:
            raise DetectorUnavailable(
                f"downloading {file.url} failed ({error}). " + _where_to_get()
            ) from error
        _install_bytes(file, data, file.url)
    return [mtcnn_dir() / f.name for f in files]


def install_mtcnn_from_wheel(wheel_path: Path | str) -> list[Path]:
    """Copy the verified MTCNN weights out of a downloaded facenet-pytorch 2.6.0 wheel."""
    wheel_path = Path(wheel_path)
    try:
        archive = zipfile.ZipFile(wheel_path)
    except (OSError, zipfile.BadZipFile) as error:
        raise DetectorUnavailable(
            f"{wheel_path} is not a readable wheel ({error}). Download it again with "
            f"`pip download {FACENET_WHEEL} --no-deps -d <folder>`."
        ) from error
    with archive:
        names = set(archive.namelist())
        paths = []
        for file in MTCNN_FILES:
            member = _WHEEL_MEMBER.format(file.name)
            if member not in names:
                raise DetectorUnavailable(
                    f"{wheel_path} has no {member}: it is not a facenet-pytorch wheel. "
                    f"Download it with `pip download {FACENET_WHEEL} --no-deps -d <folder>`."
                )
            paths.append(_install_bytes(file, archive.read(member), f"{wheel_path}:{member}"))
    return paths


def resolve_mtcnn() -> list[Path]:
    """Paths of the verified weight files; raises DetectorUnavailable with what to do."""
    status = mtcnn_status()
    if status.state != "ready":
        raise DetectorUnavailable(f"MTCNN weights are not ready: {status.message}")
    return [mtcnn_dir() / f.name for f in MTCNN_FILES]


# ---------------------------------------------------------------------------------------------
# Offline fallback and pre-cropped stimuli


def check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")


class HaarDetector:
    """OpenCV's frontal-face Haar cascade; score = the cascade's level weight, not a probability."""

    version = HAAR_VERSION
    cascade_file = "haarcascade_frontalface_default.xml"

    def __init__(self) -> None:
        path = Path(cv2.data.haarcascades) / self.cascade_file
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorUnavailable(
                f"OpenCV could not load {path}. Install opencv-python-headless 4.x "
                "(5.x ships no Haar cascades), as pinned in requirements.txt."
            )

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        check_rgb(image_rgb)
        scale = min(1.0, HAAR_MAX_SIDE / max(image_rgb.shape[:2]))
        small = image_rgb if scale == 1.0 else cv2.resize(image_rgb, None, fx=scale, fy=scale,
                                                          interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_FACE, MIN_FACE),
            outputRejectLevels=True,
        )
        faces = [
            Face(box=(x / scale, y / scale, (x + w) / scale, (y + h) / scale), score=float(weight))
            for (x, y, w, h), weight in zip(np.reshape(rects, (-1, 4)), np.ravel(weights))
        ]
        return sorted(faces, key=lambda face: -face.score)


class PrecroppedDetector:
    """A stimulus that is already a face crop: the whole image is the face."""

    version = PRECROPPED

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        check_rgb(image_rgb)
        return [Face.whole_image(image_rgb)]


def unavailable_reason(name: str) -> str | None:
    """Why detector ``name`` cannot run on this machine, or None; checked without loading it."""
    if name == "fan68":
        from core.faces.fan68 import unavailable_reason as fan68_reason

        return fan68_reason()
    if name == "mtcnn":
        status = mtcnn_status()
        return None if status.state == "ready" else status.message
    return None


@functools.lru_cache(maxsize=8)
def get_detector(name: str, device: str = "cpu") -> Detector:
    """A ready detector by name (loaded once per process); raises DetectorUnavailable."""
    if name == "mtcnn":
        from core.faces.mtcnn import load_mtcnn  # torch is imported only when MTCNN runs

        return load_mtcnn(device)
    if name == "haar":
        return HaarDetector()
    if name == PRECROPPED:
        return PrecroppedDetector()
    if name == "fan68":
        from core.faces.fan68 import load_fan68  # optional face-alignment package, torch

        return load_fan68(device)
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
