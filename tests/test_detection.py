"""Face detectors: MTCNN decoding and golden output, weight handling, Haar fallback, pre-cropped."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skimage_data

from core.faces.detection import (
    MTCNN_FILES,
    DetectorUnavailable,
    HaarDetector,
    PrecroppedDetector,
    download_mtcnn,
    get_detector,
    install_mtcnn_from_wheel,
    mtcnn_dir,
    mtcnn_status,
)
from core.faces.mtcnn import MTCNNDetector, ONet, PNet, RNet, load_mtcnn, nms_min_overlap
from core.io.storage import sha256_bytes
from core.models.spec import CheckpointFile

# facenet-pytorch 2.6.0, MTCNN() defaults, on skimage.data.astronaut() (MODELS.md: box and prob;
# landmarks from MTCNN(keep_all=True).detect(img, landmarks=True) run with torch 2.14.1, CPU).
ASTRONAUT_BOX = (181.1, 62.2, 267.7, 172.1)
ASTRONAUT_PROB = 0.99999774
ASTRONAUT_LANDMARKS = (
    (205.011, 101.727),
    (246.763, 103.714),
    (224.671, 128.965),
    (201.716, 139.246),
    (245.265, 141.857),
)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def always_face_nets(landmark: float) -> tuple[PNet, RNet, ONet]:
    """Random nets whose face logit always wins, with zero box offsets and every landmark output
    equal to ``landmark``: every stage passes and the decoding arithmetic becomes predictable."""
    torch.manual_seed(0)
    pnet, rnet, onet = PNet(), RNet(), ONet()
    with torch.no_grad():
        for head in (pnet.conv4_1, rnet.dense5_1, onet.dense6_1):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([-10.0, 10.0]))
        for head in (pnet.conv4_2, rnet.dense5_2, onet.dense6_2, onet.dense6_3):
            head.weight.zero_()
            head.bias.zero_()
        onet.dense6_3.bias.fill_(landmark)
    return pnet, rnet, onet


def test_cascade_decodes_landmarks_relative_to_the_output_box() -> None:
    """With zero offsets the final box is O-Net's input box, and a landmark output v maps to
    x1 + v * (x2 - x1 + 1) - 1 (facenet-pytorch's convention)."""
    image = cv2.resize(skimage_data.astronaut(), (96, 80), interpolation=cv2.INTER_AREA)
    faces = MTCNNDetector(*always_face_nets(0.25)).detect(image)
    assert faces
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert x2 - x1 == pytest.approx(y2 - y1, abs=1e-3)  # stage 2 squares its boxes
        assert len(face.landmarks) == 5
        for x, y in face.landmarks:
            assert x == pytest.approx(x1 + 0.25 * (x2 - x1 + 1) - 1, abs=1e-3)
            assert y == pytest.approx(y1 + 0.25 * (y2 - y1 + 1) - 1, abs=1e-3)
    boxes = np.array([f.box for f in faces])
    kept = nms_min_overlap(boxes, np.array([f.score for f in faces]), 0.7)
    assert len(kept) == len(faces)  # the output is already suppressed


def test_cascade_finds_nothing_on_an_image_smaller_than_its_window() -> None:
    assert MTCNNDetector(*always_face_nets(0.5)).detect(np.zeros((11, 40, 3), np.uint8)) == []


def test_detectors_reject_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        PrecroppedDetector().detect(np.zeros((10, 10), np.uint8))


def test_min_overlap_nms_drops_a_box_nested_in_a_more_confident_one() -> None:
    boxes = np.array([[0, 0, 99, 99], [10, 10, 39, 39], [200, 200, 240, 240]], float)
    assert nms_min_overlap(boxes, np.array([0.9, 0.95, 0.5]), 0.7).tolist() == [1, 2]
    assert nms_min_overlap(boxes, np.array([0.99, 0.95, 0.5]), 0.7).tolist() == [0, 2]


box_strategy = st.tuples(
    st.integers(0, 200), st.integers(0, 200), st.integers(1, 120), st.integers(1, 120)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(box_strategy, st.floats(0, 1)), min_size=1, max_size=12))
def test_min_overlap_nms_invariants(items: list) -> None:
    boxes = np.array([b for b, _ in items], float)
    scores = np.array([s for _, s in items])
    kept = nms_min_overlap(boxes, scores, 0.7).tolist()

    def overlap(i: int, j: int) -> float:
        w = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
        h = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
        sides = boxes[:, 2:] - boxes[:, :2] + 1
        return w * h / min(sides[i].prod(), sides[j].prod())

    assert [scores[k] for k in kept] == sorted((scores[k] for k in kept), reverse=True)
    assert all(overlap(i, j) <= 0.7 for i in kept for j in kept if i != j)
    for dropped in set(range(len(items))) - set(kept):
        assert any(overlap(dropped, k) > 0.7 and scores[k] >= scores[dropped] for k in kept)


# --- weights: cache, verification, download, wheel ---------------------------------------------


def test_missing_weights_give_an_actionable_error(data_dir: Path) -> None:
    assert mtcnn_status().state == "missing"
    with pytest.raises(DetectorUnavailable, match="install_mtcnn_from_wheel.*haar"):
        load_mtcnn()


def test_a_wrong_cached_file_is_refused_before_loading(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mtcnn_dir().mkdir(parents=True)
    for file in MTCNN_FILES:
        torch.save({"conv1.weight": torch.zeros(1)}, mtcnn_dir() / file.name)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("unverified file unpickled"))
    assert mtcnn_status().state == "mismatch"
    with pytest.raises(DetectorUnavailable, match="expected a2a71925"):
        load_mtcnn()


def fake_files(
    tmp_path: Path, payloads: dict[str, bytes], published: dict[str, bytes]
) -> list[CheckpointFile]:
    """Files served from file:// URLs with ``payloads``; their published hash is ``published``'s."""
    files = []
    for name, payload in payloads.items():
        (tmp_path / name).write_bytes(payload)
        files.append(CheckpointFile(name, (tmp_path / name).as_uri(), "legacy_state_dict",
                                    sha256=sha256_bytes(published[name]), size=len(payload)))
    return files


def test_download_verifies_before_keeping(data_dir: Path, tmp_path: Path) -> None:
    good = {"pnet.pt": b"p" * 70_000, "rnet.pt": b"r" * 10}
    seen = []
    paths = download_mtcnn(lambda done, total: seen.append((done, total)),
                           files=fake_files(tmp_path, good, good))
    assert [p.read_bytes() for p in paths] == list(good.values())
    assert seen[-1] == (70_010, 70_010)
    bad = fake_files(tmp_path, {"onet.pt": b"tampered"}, {"onet.pt": b"original"})
    with pytest.raises(DetectorUnavailable, match="onet.pt .* has sha256"):
        download_mtcnn(files=bad)
    assert not (mtcnn_dir() / "onet.pt").exists()
    assert not list(mtcnn_dir().glob(".incoming-*"))


def test_download_failure_names_the_url(data_dir: Path, tmp_path: Path) -> None:
    missing = CheckpointFile("pnet.pt", (tmp_path / "absent.pt").as_uri(), "legacy_state_dict",
                             sha256="0" * 64, size=1)
    with pytest.raises(DetectorUnavailable, match="absent.pt failed"):
        download_mtcnn(files=[missing])


def test_wheel_install_rejects_wrong_archives(data_dir: Path, tmp_path: Path) -> None:
    not_zip = tmp_path / "x.whl"
    not_zip.write_bytes(b"no zip")
    with pytest.raises(DetectorUnavailable, match="not a readable wheel"):
        install_mtcnn_from_wheel(not_zip)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/data/pnet.pt", b"x")
    with pytest.raises(DetectorUnavailable, match="not a facenet-pytorch wheel"):
        install_mtcnn_from_wheel(other)
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(tampered, "w") as archive:
        for file in MTCNN_FILES:
            archive.writestr(f"facenet_pytorch/data/{file.name}", b"tampered")
    with pytest.raises(DetectorUnavailable, match="pnet.pt from .* has sha256"):
        install_mtcnn_from_wheel(tampered)
    assert mtcnn_status().state == "missing"


def test_unknown_detector_is_named() -> None:
    with pytest.raises(ValueError, match="unknown face detector 'dlib'.*mtcnn, haar, precropped"):
        get_detector("dlib")


# --- real weights --------------------------------------------------------------------------------


@pytest.mark.weights
def test_mtcnn_golden_astronaut(mtcnn_weights: Path, astronaut: np.ndarray) -> None:
    """Reference: facenet-pytorch 2.6.0 on skimage's astronaut (values in the module header)."""
    assert mtcnn_status().state == "ready"
    faces = load_mtcnn().detect(astronaut)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, ASTRONAUT_BOX, atol=0.1)
    assert faces[0].score == pytest.approx(ASTRONAUT_PROB, abs=1e-5)
    np.testing.assert_allclose(faces[0].landmarks, ASTRONAUT_LANDMARKS, atol=0.05)


@pytest.mark.weights
def test_mtcnn_finds_each_face_of_a_collage(mtcnn_weights: Path, astronaut: np.ndarray) -> None:
    """Two copies (one mirrored, one half size) on a grey canvas: two faces where they were put."""
    canvas = np.full((400, 700, 3), 128, np.uint8)
    canvas[:, :400] = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)
    mirrored = astronaut[:, ::-1]
    canvas[100:300, 450:650] = cv2.resize(mirrored, (200, 200), interpolation=cv2.INTER_AREA)
    faces = load_mtcnn().detect(canvas)
    assert len(faces) == 2
    expected = [
        tuple(v * 400 / 512 for v in ASTRONAUT_BOX),
        (450 + (512 - ASTRONAUT_BOX[2]) * 200 / 512, 100 + ASTRONAUT_BOX[1] * 200 / 512,
         450 + (512 - ASTRONAUT_BOX[0]) * 200 / 512, 100 + ASTRONAUT_BOX[3] * 200 / 512),
    ]
    for box in expected:
        assert max(iou(face.box, box) for face in faces) > 0.7


# --- offline detectors ---------------------------------------------------------------------------


def test_haar_finds_the_astronaut_offline(astronaut: np.ndarray) -> None:
    faces = HaarDetector().detect(astronaut)
    assert len(faces) == 1
    assert faces[0].landmarks is None
    assert iou(faces[0].box, ASTRONAUT_BOX) > 0.5


def test_haar_finds_no_face_in_a_flat_image() -> None:
    assert HaarDetector().detect(np.full((120, 160, 3), 90, np.uint8)) == []


def test_precropped_face_is_the_whole_image() -> None:
    faces = PrecroppedDetector().detect(np.zeros((30, 20, 3), np.uint8))
    assert [f.box for f in faces] == [(0.0, 0.0, 20.0, 30.0)]



def test_haar_on_a_large_portrait_finds_the_one_face(astronaut: np.ndarray) -> None:
    """5x the astronaut (2,560 px): before v2, 9 boxes in 1.8 s on our machine; now the one face."""
    big = cv2.resize(astronaut, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)
    faces = HaarDetector().detect(big)
    assert len(faces) == 1
    assert iou(tuple(v / 5 for v in faces[0].box), ASTRONAUT_BOX) > 0.5
