"""Content-addressed blob storage: every uploaded file is kept once, named by its sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from core.io.paths import data_dir

CHUNK = 1 << 20


def blobs_dir() -> Path:
    path = data_dir() / "blobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def blob_path(sha256: str) -> Path:
    """Where the blob with this hash lives (two-level fan-out keeps folders small)."""
    return blobs_dir() / sha256[:2] / sha256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    """Hash a file in chunks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def store_bytes(data: bytes) -> str:
    """Store ``data`` (idempotent) and return its sha256."""
    sha = sha256_bytes(data)
    target = blob_path(sha)
    if not target.exists():
        _atomic_write(target, [data])
    return sha


def store_stream(stream: BinaryIO, limit: int | None = None) -> tuple[str, int]:
    """Store a stream without holding it in memory; returns (sha256, size).

    Raises ValueError past ``limit`` bytes (ZIP bombs declare small sizes and inflate).
    """
    digest = hashlib.sha256()
    size = 0
    target_dir = blobs_dir()
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise ValueError(f"file is larger than the {limit:,} byte limit")
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        target = blob_path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
        return sha, size
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_blob(sha256: str) -> bytes:
    return blob_path(sha256).read_bytes()


def _atomic_write(target: Path, chunks: list[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    os.replace(tmp, target)
