"""Checkpoint cache: download, register, verify. Nothing is ever loaded before its hash is checked.

Layout: ``data_dir()/checkpoints/<folder>/<file name>`` where ``folder`` is the model id (or
``spec.options["checkpoint_dir"]`` when several specs share files, e.g. an ensemble and its
members) plus ``manifest.json`` in the same folder recording, per file, its sha256, size, how it
was verified and where it came from.

Verification, strongest first: the published sha256; the git blob id of the file in its official
repository (``sha1(b"blob <size>\\0" + bytes)``, what ``git hash-object`` prints); for files with
neither, the sha256 recorded when the user registered (or first downloaded) the file, "pinned on
registration". A file in the folder that matches none of these is never handed to a loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from core.io.network import is_offline
from core.io.paths import data_dir
from core.models.spec import CheckpointFile, ModelSpec

CHUNK = 1 << 20
MANIFEST = "manifest.json"
USER_AGENT = "FaceAgree checkpoint downloader"

Progress = Callable[[int, int], None]
State = Literal["ready", "missing", "mismatch", "unverified"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and what to do."""


class NoConnectionError(CheckpointError):
    """A download that could not reach its server; a local copy can still be registered."""


@dataclass(frozen=True)
class CheckpointStatus:
    state: State
    paths: list[Path]
    message: str
    where_to_get: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    git_blob: str
    size: int


# --- hashing -------------------------------------------------------------------------------------


def git_blob_id(path: Path) -> str:
    """The id git gives this file's content (``git hash-object``), computed without git."""
    return hash_file(path).git_blob


def hash_file(path: Path) -> FileHashes:
    """sha256 and git blob id of a file in one streaming pass (the size is known up front)."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return FileHashes(sha256.hexdigest(), sha1.hexdigest(), size)


def matches(expected: CheckpointFile, hashes: FileHashes) -> bool | None:
    """True/False when ``expected`` publishes a hash, None when it publishes none (or only a
    sha256 prefix that the file matches: the full hash is then pinned as for an unhashed file)."""
    if expected.sha256:
        return hashes.sha256 == expected.sha256.lower()
    if expected.git_blob:
        return hashes.git_blob == expected.git_blob.lower()
    if expected.sha256_prefix and not hashes.sha256.startswith(expected.sha256_prefix.lower()):
        return False
    return None


# --- cache folder and manifest -------------------------------------------------------------------


def checkpoint_dir(spec: ModelSpec) -> Path:
    folder = data_dir() / "checkpoints" / str(spec.options.get("checkpoint_dir", spec.id))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read_manifest(folder: Path) -> dict[str, dict]:
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a valid manifest ({exc}); delete it and register the files again") from exc


def _write_manifest_entry(folder: Path, name: str, entry: dict) -> None:
    files = _read_manifest(folder)
    files[name] = entry
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"files": files}, out, indent=2, sort_keys=True)
    os.replace(tmp, folder / MANIFEST)


def _slot_variants(slot: CheckpointFile) -> tuple[CheckpointFile, ...]:
    return (slot, *slot.alternatives)


# --- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SlotCheck:
    state: State
    path: Path | None
    variant: CheckpointFile | None
    sha256: str | None
    problem: str = ""


def _check_variant(folder: Path, variant: CheckpointFile, manifest: dict, fast: bool) -> _SlotCheck:
    path = folder / variant.name
    if not path.exists():
        return _SlotCheck("missing", None, None, None, f"{variant.name} is missing")
    entry = manifest.get(variant.name)
    stat = path.stat()
    fresh = bool(entry) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
    if fast and fresh:
        hashes = FileHashes(entry["sha256"], entry.get("git_blob", ""), stat.st_size)
    else:
        hashes = hash_file(path)
    verdict = matches(variant, hashes)
    if verdict is None:  # no published hash: trust only what the user pinned on registration
        if entry is None:
            return _SlotCheck("unverified", path, variant, None, f"{variant.name} was never registered, so its content is unknown")
        verdict = hashes.sha256 == entry["sha256"]
    if not verdict:
        return _SlotCheck("mismatch", path, variant, None, f"{variant.name} does not match its expected hash (corrupt or a different file)")
    if not fresh:  # e.g. an official file copied into the folder by hand: remember it is verified
        previous = entry or {}
        _record(folder, variant.name, hashes, path,
                previous.get("verified_by") or _published_by(variant),
                previous.get("source", "found in the cache folder"))
    return _SlotCheck("ready", path, variant, hashes.sha256)


def _check_slot(folder: Path, slot: CheckpointFile, manifest: dict, fast: bool) -> _SlotCheck:
    """The first ready variant of a slot, else the most informative failure."""
    checks = [_check_variant(folder, variant, manifest, fast) for variant in _slot_variants(slot)]
    for check in checks:
        if check.state == "ready":
            return check
    for state in ("mismatch", "unverified"):
        for check in checks:
            if check.state == state:
                return check
    return checks[0]


def where_to_get(spec: ModelSpec) -> str:
    """Human instructions naming every file and its official URL."""
    lines = []
    for slot in spec.checkpoints:
        names = " or ".join(v.name for v in _slot_variants(slot))
        source = slot.url or "no public download; register a local copy"
        lines.append(f"{names}: {source}")
    if spec.options.get("where_to_get"):
        lines.append(str(spec.options["where_to_get"]))
    if spec.homepage:
        lines.append(f"Model home page: {spec.homepage}")
    return "\n".join(lines)


def checkpoint_status(spec: ModelSpec) -> CheckpointStatus:
    """ready / missing / mismatch / unverified for the model's files (cheap: uses the manifest)."""
    folder = checkpoint_dir(spec)
    manifest = _read_manifest(folder)
    checks = [_check_slot(folder, slot, manifest, fast=True) for slot in spec.checkpoints]
    problems = [c.problem for c in checks if c.problem]
    for state in ("mismatch", "unverified", "missing"):
        if any(c.state == state for c in checks):
            message = f"{spec.id}: " + "; ".join(problems)
            return CheckpointStatus(state, [], message, where_to_get(spec), problems)
    paths = [c.path for c in checks if c.path is not None]
    return CheckpointStatus("ready", paths, f"{spec.id}: all {len(paths)} file(s) verified", where_to_get(spec))


def resolve(spec: ModelSpec) -> list[Path]:
    """Verified paths in spec order, re-hashing every file now; raises CheckpointError otherwise."""
    return [check.path for check in _ready_slots(spec, fast=False)]


def _ready_slots(spec: ModelSpec, fast: bool) -> list[_SlotCheck]:
    """Each slot's check in spec order; raises CheckpointError at the first one not ready."""
    folder = checkpoint_dir(spec)
    manifest = _read_manifest(folder)
    checks = []
    for slot in spec.checkpoints:
        check = _check_slot(folder, slot, manifest, fast=fast)
        if check.state != "ready":
            raise CheckpointError(_advice(spec, check))
        checks.append(check)
    return checks


def _advice(spec: ModelSpec, check: _SlotCheck) -> str:
    remedies = {
        "missing": "download it (Models page or the CLI) or register a local copy",
        "mismatch": "delete it and download it again, or register the official file",
        "unverified": "register it (Models page or checkpoints.register_local) so its hash is checked",
    }
    return f"model {spec.id!r}: {check.problem}; {remedies[check.state]}. Where to get it:\n{where_to_get(spec)}"


def used_files(spec: ModelSpec) -> list[tuple[CheckpointFile, Path, str]]:
    """(variant, path, sha256) of the verified file in each slot (manifest-fast); raises if not ready."""
    return [(check.variant, check.path, check.sha256) for check in _ready_slots(spec, fast=True)]


def weights_fingerprint(spec: ModelSpec) -> str:
    """The cache-key part naming the exact weights: the file's sha256 for a one-file model, else
    the sha256 over ``name:sha256`` lines of all files in spec order."""
    files = used_files(spec)
    if len(files) == 1:
        return files[0][2]
    lines = "".join(f"{variant.name}:{sha}\n" for variant, _, sha in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# --- adding files -----------------------------------------------------------------------------------


def _install(spec: ModelSpec, slot: CheckpointFile, tmp: Path, source: str, pin_note: str) -> Path:
    """Verify a temp file against the slot's variants and move it into place, or delete it."""
    folder = checkpoint_dir(spec)
    hashes = hash_file(tmp)
    variants = _slot_variants(slot)
    chosen = next((v for v in variants if matches(v, hashes)), None)
    if chosen is None:
        unhashed = [v for v in variants if matches(v, hashes) is None]
        if not unhashed:
            tmp.unlink(missing_ok=True)
            expected = ", ".join(f"{v.name}: {_expected_hash(v)}" for v in variants)
            raise CheckpointError(
                f"model {spec.id!r}: the file from {source} is not the official checkpoint "
                f"(sha256 {hashes.sha256}, git blob {hashes.git_blob}; expected {expected}). Nothing was stored."
            )
        chosen = unhashed[0]
        verified_by = pin_note
    else:
        verified_by = _published_by(chosen)
    target = folder / chosen.name
    os.replace(tmp, target)
    _record(folder, chosen.name, hashes, target, verified_by, source)
    return target


def _expected_hash(variant: CheckpointFile) -> str:
    if variant.sha256:
        return variant.sha256
    if variant.git_blob:
        return f"git blob {variant.git_blob}"
    return f"sha256 starting {variant.sha256_prefix}"


def _published_by(variant: CheckpointFile) -> str:
    return "sha256" if variant.sha256 else "git_blob"


def _record(folder: Path, name: str, hashes: FileHashes, path: Path, verified_by: str, source: str) -> None:
    stat = path.stat()
    _write_manifest_entry(folder, name, {
        "sha256": hashes.sha256, "git_blob": hashes.git_blob, "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns, "verified_by": verified_by, "source": source,
        "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def register_local(spec: ModelSpec, index: int, source: Path | bytes) -> Path:
    """Copy a user's file (path or uploaded bytes) into slot ``index`` of the cache.

    A slot with a published hash accepts only the official bytes (in any of its variants);
    otherwise the file's sha256 is pinned in the manifest on registration.
    """
    slot = spec.checkpoints[index]
    folder = checkpoint_dir(spec)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                with open(source, "rb") as handle:
                    shutil.copyfileobj(handle, out, CHUNK)
        label = "upload" if isinstance(source, bytes) else str(source)
        return _install(spec, slot, tmp, label, "pinned on registration")
    finally:
        tmp.unlink(missing_ok=True)


def register_folder(spec: ModelSpec, folder: Path) -> list[Path]:
    """Register every file of the spec found by name in ``folder`` (e.g. FACEAGREE_WEIGHTS_DIR)."""
    added = []
    for index, slot in enumerate(spec.checkpoints):
        for variant in _slot_variants(slot):
            candidate = folder / variant.name
            if candidate.is_file():
                added.append(register_local(spec, index, candidate))
                break
    return added


def download(spec: ModelSpec, progress: Progress | None = None) -> list[Path]:
    """Fetch every file that is not ready, verify it in a temp file, then move it into place.

    ``progress(done_bytes, total_bytes)`` is called as bytes arrive (total 0 when unknown).
    Returns the verified paths in spec order.
    """
    folder = checkpoint_dir(spec)
    manifest = _read_manifest(folder)
    todo = [s for s in spec.checkpoints if _check_slot(folder, s, manifest, fast=True).state != "ready"]
    missing_url = [s.name for s in todo if not s.url]
    if missing_url:
        raise CheckpointError(
            f"model {spec.id!r}: {', '.join(missing_url)} has no download link; register a local copy. "
            f"Where to get it:\n{where_to_get(spec)}"
        )
    total = sum(s.size or 0 for s in todo)
    done = 0
    for slot in todo:
        done = _download_one(spec, slot, folder, progress, done, total)
    return resolve(spec)


def _download_one(spec: ModelSpec, slot: CheckpointFile, folder: Path, progress: Progress | None, done: int, total: int) -> int:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".download-")
    tmp = Path(name)
    request = urllib.request.Request(slot.url, headers={"User-Agent": USER_AGENT})
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            total = total or int(response.headers.get("Content-Length") or 0)
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, max(total, done))
        _install(spec, slot, tmp, slot.url, "pinned on first download")
        return done
    except OSError as exc:
        if is_offline(exc):
            raise NoConnectionError(
                f"model {spec.id!r}: no internet connection ({slot.url} unreachable); register a local "
                f"copy of {slot.name} instead") from exc
        raise CheckpointError(f"model {spec.id!r}: downloading {slot.name} from {slot.url} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
