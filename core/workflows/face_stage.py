"""The face stage: detect faces once per stimulus and detector, store them, choose one by rule.

Every face a detector finds is stored (db.faces), so choosing with another rule never re-runs
detection. Which face a model crops is decided here, by an explicit rule:

- "largest": the biggest box (default; the subject of a face stimulus is usually the largest face)
- "most_confident": the highest detector score
- "central": the box centre nearest the image centre
- "none-if-several": use no face when more than one is found (the stimulus is skipped)

``FaceResult.detector`` is the string models put in their prediction cache key: the detector
version, plus the chosen face's index when several faces make the choice matter, so a changed
rule never serves a prediction made on another face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, require
from core.faces.crops import Face
from core.faces.detection import DETECTOR_VERSIONS, DETECTORS, PRECROPPED, Detector, get_detector
from core.io.images import ImageError, load_rgb
from db import faces as face_db
from db.models import FaceDetection

Progress = Callable[[int, int], None]

CHOICE_RULES = ("largest", "most_confident", "central", "none-if-several")
COMMIT_EVERY = 16  # stimuli per transaction: an interrupted run keeps what it detected


@dataclass(frozen=True)
class FaceResult:
    """The face stage's answer for one stimulus."""

    sha256: str
    status: str  # "one", "several", "none", "precropped" or "error"
    version: str  # detector version that produced ``faces`` ("mtcnn-v1", "precropped", ...)
    faces: tuple[Face, ...] = ()
    chosen: int | None = None
    rule: str = "largest"
    error: str | None = None
    image_size: tuple[int, int] | None = None  # (width, height)

    @property
    def face(self) -> Face | None:
        """The face models should crop, or None (no face, skipped by rule, or error)."""
        return None if self.chosen is None else self.faces[self.chosen]

    @property
    def detector(self) -> str:
        """The prediction cache key part for this result (see the module docstring)."""
        if len(self.faces) > 1:
            return f"{self.version}#{'none' if self.chosen is None else self.chosen}"
        return self.version


def choose_face(faces: Sequence[Face], rule: str, image_size: tuple[int, int] | None) -> int | None:
    """Index of the face ``rule`` picks, or None. Ties go to the earlier (more confident) face."""
    _check_rule(rule)
    if not faces or (rule == "none-if-several" and len(faces) > 1):
        return None
    if rule in ("largest", "none-if-several"):
        key = [(-face.area, -face.score) for face in faces]
    elif rule == "most_confident":
        key = [(-face.score, -face.area) for face in faces]
    else:
        key = [(_centre_distance(face, image_size), -face.area) for face in faces]
    return min(range(len(faces)), key=lambda i: (key[i], i))


def _centre_distance(face: Face, image_size: tuple[int, int] | None) -> float:
    if image_size is None:
        raise ValueError("the 'central' rule needs the image size")
    x1, y1, x2, y2 = face.box
    width, height = image_size
    return ((x1 + x2 - width) / 2) ** 2 + ((y1 + y2 - height) / 2) ** 2


def _check_rule(rule: str) -> None:
    if rule not in CHOICE_RULES:
        choices = ", ".join(CHOICE_RULES)
        raise ValueError(f"unknown face choice rule {rule!r}; choose one of {choices}")


def _check_detector(name: str) -> None:
    if name not in DETECTOR_VERSIONS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


def _status(version: str, faces: Sequence[Face]) -> str:
    if version == PRECROPPED:
        return "precropped"
    return {0: "none", 1: "one"}.get(len(faces), "several")


def detected(
    sha256: str, version: str, faces: Sequence[Face], rule: str, image_size: tuple[int, int]
) -> FaceResult:
    """A successful detection with the face ``rule`` picks."""
    return FaceResult(
        sha256=sha256,
        status=_status(version, faces),
        version=version,
        faces=tuple(faces),
        chosen=choose_face(faces, rule, image_size),
        rule=rule,
        image_size=image_size,
    )


def restrict(result: FaceResult, keeps: Callable[[Face], bool]) -> FaceResult:
    """``result`` choosing only among the faces ``keeps`` accepts (a model's face profile).

    Indices stay those of the stored detection, so the cache key names the same face; a
    pre-cropped or failed result is returned unchanged.
    """
    if result.status in ("precropped", "error"):
        return result
    eligible = [i for i, face in enumerate(result.faces) if keeps(face)]
    picked = choose_face([result.faces[i] for i in eligible], result.rule, result.image_size)
    return replace(result, chosen=None if picked is None else eligible[picked])


def _failed(sha256: str, version: str, rule: str, message: str) -> FaceResult:
    return FaceResult(sha256=sha256, status="error", version=version, rule=rule, error=message)


# ---------------------------------------------------------------------------------------------
# Stored form (db.faces documents the JSON layout)


def _face_to_json(face: Face, image_size: tuple[int, int] | None) -> dict[str, Any]:
    return {
        "box": list(face.box),
        "score": face.score,
        "landmarks": None if face.landmarks is None else [list(p) for p in face.landmarks],
        "image_size": None if image_size is None else list(image_size),
    }


def _face_from_json(item: dict[str, Any]) -> Face:
    landmarks = item.get("landmarks")
    return Face(
        box=tuple(float(v) for v in item["box"]),
        score=float(item["score"]),
        landmarks=None if landmarks is None else tuple((float(x), float(y)) for x, y in landmarks),
    )


def result_from_row(row: FaceDetection, rule: str | None = None) -> FaceResult:
    """A stored detection; ``rule`` re-chooses the face, None keeps the stored choice."""
    faces = tuple(_face_from_json(item) for item in row.faces or [])
    sizes = [item.get("image_size") for item in row.faces or [] if item.get("image_size")]
    image_size = tuple(sizes[0]) if sizes else None
    if row.status == "error":
        return _failed(row.stimulus_sha256, row.detector, rule or row.choice_rule, row.error or "")
    chosen = row.chosen if rule is None else choose_face(faces, rule, image_size)
    return FaceResult(
        sha256=row.stimulus_sha256,
        status=row.status,
        version=row.detector,
        faces=faces,
        chosen=chosen,
        rule=rule or row.choice_rule,
        image_size=image_size,
    )


def _save(session: Session, result: FaceResult, *, actor: Role) -> None:
    face_db.save_detection(
        session,
        sha256=result.sha256,
        detector=result.version,
        faces=[_face_to_json(face, result.image_size) for face in result.faces],
        chosen=result.chosen,
        choice_rule=result.rule,
        status=result.status,
        error=result.error,
        actor=actor,
    )


def _save_all(factory: sessionmaker[Session], results: list[FaceResult], *, actor: Role) -> None:
    """Store a chunk; a concurrent run that inserted the same rows first makes this an update."""
    for attempt in (1, 2):
        try:
            with factory.begin() as session:
                for result in results:
                    _save(session, result, actor=actor)
            return
        except IntegrityError:
            if attempt == 2:
                raise


# ---------------------------------------------------------------------------------------------
# The stage


def detect_image(sha256: str, detector: Detector, rule: str) -> FaceResult:
    """Load one stored stimulus and detect its faces; a bad image or a detector failure on it
    becomes an "error" result, never an exception."""
    try:
        image = load_rgb(sha256)
    except (ImageError, OSError) as error:
        return _failed(sha256, detector.version, rule, str(error))
    try:
        faces = detector.detect(image)
    except Exception as error:  # one odd image must not stop a batch; the message is stored
        return _failed(
            sha256, detector.version, rule, f"face detection failed on this image: {error!r}"
        )
    height, width = image.shape[:2]
    return detected(sha256, detector.version, faces, rule, (width, height))


def _read_stored(
    factory: sessionmaker[Session], plan: dict[str, str], rule: str, *, actor: Role
) -> dict[str, FaceResult]:
    """Stored successful detections, re-chosen by ``rule`` (the new choice is recorded)."""
    results: dict[str, FaceResult] = {}
    with factory.begin() as session:
        for name in set(plan.values()):
            shas = [sha for sha, planned in plan.items() if planned == name]
            rows = face_db.get_detections(session, shas, DETECTOR_VERSIONS[name])
            for sha, row in rows.items():
                if row.status == "error":
                    continue  # retried: the blob may have been restored since
                result = result_from_row(row, rule)
                if (row.chosen, row.choice_rule) != (result.chosen, rule):
                    face_db.set_choice(session, row.id, result.chosen, rule, actor=actor)
                results[sha] = result
    return results


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ensure_faces(
    factory: sessionmaker[Session],
    sha256s: Iterable[str],
    detector: str = "mtcnn",
    rule: str = "largest",
    precropped: Iterable[str] = frozenset(),
    progress: Progress | None = None,
    *,
    device: str = "cpu",
    actor: Role,
) -> dict[str, FaceResult]:
    """The face of every stimulus, detecting only what is not stored yet.

    Stimuli in ``precropped`` use the whole image (detector "precropped"). Results are committed
    every COMMIT_EVERY stimuli. Raises DetectorUnavailable (actionable message) when a needed
    detector cannot load, e.g. MTCNN weights not downloaded; per-image problems are "error" results.
    """
    require(actor, Action.RUN_MODELS)
    _check_detector(detector)
    _check_rule(rule)
    precropped = set(precropped)
    wanted = list(dict.fromkeys(sha256s))
    plan = {sha: PRECROPPED if sha in precropped else detector for sha in wanted}
    results = _read_stored(factory, plan, rule, actor=actor)
    todo = [sha for sha in wanted if sha not in results]
    detectors = {name: get_detector(name, device) for name in {plan[sha] for sha in todo}}
    done = len(results)
    if progress:
        progress(done, len(wanted))
    for chunk in _chunks(todo, COMMIT_EVERY):
        computed = []
        for sha in chunk:
            computed.append(detect_image(sha, detectors[plan[sha]], rule))
            done += 1
            if progress:
                progress(done, len(wanted))
        _save_all(factory, computed, actor=actor)
        results.update({result.sha256: result for result in computed})
    return {sha: results[sha] for sha in wanted}


def describe(result: FaceResult) -> str:
    """One line for a stimulus page: detector, faces found, which one is used and the scores."""
    if result.status == "error":
        return f"{result.version}: error — {result.error}"
    if result.status == "precropped":
        return "pre-cropped stimulus: the whole image is the face"
    scores = ", ".join(f"{face.score:.3g}" for face in result.faces)
    found = {0: "no face found", 1: "1 face"}.get(len(result.faces), f"{len(result.faces)} faces")
    if result.chosen is None:
        used = "none used" + (f" (rule {result.rule})" if result.faces else "")
    else:
        used = f"using face {result.chosen + 1} (rule {result.rule})"
    return f"{result.version}: {found}, {used}" + (f"; scores {scores}" if scores else "")
