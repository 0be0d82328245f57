"""Checkpoint cache: hashing, registration, status states, downloads (local HTTP and file://)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.models import checkpoints
from core.models.checkpoints import CheckpointError
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing

PAYLOAD = b"hello\n"
# `printf 'hello\n' | git hash-object --stdin` prints this id (git's documented example blob).
PAYLOAD_GIT_BLOB = "ce013625030ba8dba906f756967f9e9ca394464a"
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def make_spec(*slots: CheckpointFile, model_id: str = "toy") -> ModelSpec:
    return ModelSpec(
        id=model_id, name="Toy", pipeline="test", adapter="none", paper="", license="MIT",
        architecture="", pretraining="", training_data="", strategy="", params=0,
        checkpoints=slots,
        preprocessing=Preprocessing(version="v1", input_size=(8, 8), colour="RGB", crop="whole_image"),
        native_labels=("happy",), outputs=frozenset({"probs"}),
    )


def slot(**kwargs: object) -> CheckpointFile:
    return CheckpointFile(**{"name": "weights.bin", "url": None, "fmt": "state_dict", **kwargs})


def test_git_blob_id_matches_git(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(PAYLOAD)
    assert checkpoints.git_blob_id(path) == PAYLOAD_GIT_BLOB
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    # `git hash-object /dev/null`
    assert checkpoints.git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


@pytest.mark.parametrize("expected", [{"git_blob": PAYLOAD_GIT_BLOB}, {"sha256": PAYLOAD_SHA256}])
def test_register_verified_file_is_ready(data_dir: Path, expected: dict) -> None:
    spec = make_spec(slot(**expected))
    assert checkpoints.checkpoint_status(spec).state == "missing"
    path = checkpoints.register_local(spec, 0, PAYLOAD)
    status = checkpoints.checkpoint_status(spec)
    assert status.state == "ready" and status.paths == [path]
    assert checkpoints.resolve(spec) == [path]
    assert path.parent == data_dir / "checkpoints" / "toy"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["files"]["weights.bin"]["verified_by"] == next(iter(expected))


def test_register_wrong_file_is_refused_and_not_kept(data_dir: Path) -> None:
    spec = make_spec(slot(git_blob=PAYLOAD_GIT_BLOB))
    with pytest.raises(CheckpointError, match="not the official checkpoint"):
        checkpoints.register_local(spec, 0, b"something else")
    folder = checkpoints.checkpoint_dir(spec)
    assert [p.name for p in folder.iterdir()] == []
    assert checkpoints.checkpoint_status(spec).state == "missing"


def test_file_without_published_hash_is_pinned_on_registration(data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(slot())
    source = tmp_path / "mine.bin"
    source.write_bytes(PAYLOAD)
    path = checkpoints.register_local(spec, 0, source)
    entry = json.loads((path.parent / "manifest.json").read_text())["files"]["weights.bin"]
    assert entry["verified_by"] == "pinned on registration" and entry["sha256"] == PAYLOAD_SHA256
    assert checkpoints.checkpoint_status(spec).state == "ready"
    path.write_bytes(b"tampered")  # a later change of the bytes is caught
    assert checkpoints.checkpoint_status(spec).state == "mismatch"
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoints.resolve(spec)


def test_unregistered_file_dropped_in_folder_is_unverified(data_dir: Path) -> None:
    spec = make_spec(slot())
    (checkpoints.checkpoint_dir(spec) / "weights.bin").write_bytes(PAYLOAD)
    status = checkpoints.checkpoint_status(spec)
    assert status.state == "unverified"
    with pytest.raises(CheckpointError, match="register it"):
        checkpoints.resolve(spec)


def test_official_file_copied_by_hand_is_verified_and_remembered(data_dir: Path) -> None:
    spec = make_spec(slot(git_blob=PAYLOAD_GIT_BLOB))
    folder = checkpoints.checkpoint_dir(spec)
    (folder / "weights.bin").write_bytes(PAYLOAD)
    assert checkpoints.checkpoint_status(spec).state == "ready"
    entry = json.loads((folder / "manifest.json").read_text())["files"]["weights.bin"]
    assert entry["verified_by"] == "git_blob" and entry["source"] == "found in the cache folder"


def test_corrupt_published_file_is_mismatch_even_with_stale_manifest(data_dir: Path) -> None:
    spec = make_spec(slot(sha256=PAYLOAD_SHA256))
    path = checkpoints.register_local(spec, 0, PAYLOAD)
    path.write_bytes(b"hellO\n")  # same size; mtime changes so the manifest fast path re-hashes
    assert checkpoints.checkpoint_status(spec).state == "mismatch"
    with pytest.raises(CheckpointError, match="download it again"):
        checkpoints.resolve(spec)


def test_missing_status_names_where_to_get(data_dir: Path) -> None:
    spec = replace(make_spec(slot(url="https://example.org/w.bin", sha256=PAYLOAD_SHA256)), homepage="https://example.org")
    status = checkpoints.checkpoint_status(spec)
    assert status.state == "missing"
    assert "https://example.org/w.bin" in status.where_to_get
    with pytest.raises(CheckpointError, match="weights.bin is missing"):
        checkpoints.resolve(spec)


def test_alternative_variant_is_accepted_and_primary_preferred(data_dir: Path) -> None:
    other = b"other official format"
    alt = slot(name="weights.pt", sha256=hashlib.sha256(other).hexdigest())
    spec = make_spec(slot(name="weights.onnx", sha256=PAYLOAD_SHA256, alternatives=(alt,)))
    path = checkpoints.register_local(spec, 0, other)
    assert path.name == "weights.pt" and checkpoints.resolve(spec) == [path]
    primary = checkpoints.register_local(spec, 0, PAYLOAD)
    assert checkpoints.resolve(spec) == [primary]
    assert checkpoints.weights_fingerprint(spec) == PAYLOAD_SHA256


def test_fingerprint_of_several_files_depends_on_every_file(data_dir: Path) -> None:
    a, b = b"first", b"second"
    spec = make_spec(slot(name="a.bin"), slot(name="b.bin"))
    checkpoints.register_local(spec, 0, a)
    checkpoints.register_local(spec, 1, b)
    first = checkpoints.weights_fingerprint(spec)
    lines = f"a.bin:{hashlib.sha256(a).hexdigest()}\nb.bin:{hashlib.sha256(b).hexdigest()}\n"
    assert first == hashlib.sha256(lines.encode()).hexdigest()
    (checkpoints.checkpoint_dir(spec) / "b.bin").unlink()
    checkpoints.register_local(spec, 1, b"changed")
    assert checkpoints.weights_fingerprint(spec) != first


def test_register_folder_picks_files_by_name(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(PAYLOAD)
    spec = make_spec(slot(git_blob=PAYLOAD_GIT_BLOB))
    assert [p.name for p in checkpoints.register_folder(spec, tmp_path)] == ["weights.bin"]
    assert checkpoints.checkpoint_status(spec).state == "ready"


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a temp folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


def test_download_over_http_verifies_and_reports_progress(data_dir: Path, http_folder: tuple[str, Path]) -> None:
    base, folder = http_folder
    content = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    (folder / "w.bin").write_bytes(content)
    spec = make_spec(slot(url=base + "w.bin", sha256=hashlib.sha256(content).hexdigest()))
    calls: list[tuple[int, int]] = []
    paths = checkpoints.download(spec, progress=lambda done, total: calls.append((done, total)))
    assert paths[0].read_bytes() == content
    assert calls[-1] == (len(content), len(content)) and len(calls) >= 3
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    assert checkpoints.download(spec) == paths  # already ready: nothing fetched


def test_download_of_wrong_bytes_keeps_nothing(data_dir: Path, http_folder: tuple[str, Path]) -> None:
    base, folder = http_folder
    (folder / "w.bin").write_bytes(b"evil")
    spec = make_spec(slot(url=base + "w.bin", git_blob=PAYLOAD_GIT_BLOB))
    with pytest.raises(CheckpointError, match="not the official checkpoint"):
        checkpoints.download(spec)
    assert list(checkpoints.checkpoint_dir(spec).iterdir()) == []


def test_download_errors_are_actionable(data_dir: Path, http_folder: tuple[str, Path]) -> None:
    base, _ = http_folder
    spec = make_spec(slot(url=base + "absent.bin", sha256=PAYLOAD_SHA256))
    with pytest.raises(CheckpointError, match="downloading weights.bin .* failed: HTTP Error 404"):
        checkpoints.download(spec)
    with pytest.raises(CheckpointError, match="no download link; register a local copy"):
        checkpoints.download(make_spec(slot(sha256=PAYLOAD_SHA256), model_id="nolink"))


def test_download_from_file_url(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "w.bin"
    source.write_bytes(PAYLOAD)
    spec = make_spec(slot(url=source.as_uri(), git_blob=PAYLOAD_GIT_BLOB))
    assert checkpoints.download(spec)[0].read_bytes() == PAYLOAD


def test_shared_checkpoint_dir_option(data_dir: Path) -> None:
    spec = replace(make_spec(slot(sha256=PAYLOAD_SHA256)), options={"checkpoint_dir": "shared"})
    assert checkpoints.register_local(spec, 0, PAYLOAD).parent.name == "shared"
