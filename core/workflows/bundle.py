"""Study bundles: one ZIP that carries a study to another deployment and back.

A bundle holds the study row, its stimuli (image bytes optional) with their metadata, every
rating batch with its original file and provenance, the predictions the study sees (imported
and computed, with their full cache keys), the registered model rows they came from (cards and
checkpoint hashes, never weights) and ``manifest.json`` (format, schema revision, library
versions, sha256 and size of every member).

Import checks the archive like any upload (the stimulus ZIP rules: paths, sizes, bomb guards),
then every member hash, the format and schema version, and every image; only then does it write,
in the caller's single transaction. Rating batches are re-imported from their original files
with their stored mapping, scales and codes, so validation and provenance are those of a normal
upload; a batch whose file no longer reads to the stored rows (an older app parsed it
differently) is restored from the bundle's rows and says so in its note. An existing study is
never touched: a name clash imports the bundle as ``"<name> (imported <date>)"``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, BinaryIO

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from PIL import Image
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from core.io.images import ImageError, inspect_image, thumbnail_jpeg
from core.io.storage import blob_path, read_blob, store_bytes, store_stream
from core.io.tabular import read_table
from core.ratings.layouts import (
    PENDING_BATCH, VOTE_RATER, ColumnMapping, PreparedRatings, prepare_ratings,
)
from core.ratings.repeats import policy_of
from core.ratings.scales import Scale
from core.workflows.stimuli import ZipLimits, _archive_problem, _check_path, _entry_problem
from db.migrate import MIGRATIONS_DIR
from db.models import (
    Prediction, Rating, RatingBatch, RegisteredModel, Stimulus, StimulusAttribute, Study,
    visible_batches,
)
from db.predictions import visible_in
from db.ratings import STORED_COLUMNS, import_batch, stimulus_index
from db.stimuli import get_study

FORMAT = "faceagree-study-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_LIMIT = 64 << 20  # the manifest lists members; it is never large
LIBRARIES = ("pandas", "numpy", "sqlalchemy", "alembic", "pillow")
CHUNK = 500
PLACEHOLDER_SIDE = 64


class BundleError(ValueError):
    """The bundle cannot be imported (or exported); the message says why and what to do."""


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    study: str
    n_stimuli: int
    n_images: int
    n_batches: int
    n_predictions: int
    n_models: int
    size: int


@dataclass(frozen=True)
class ImportSummary:
    study_id: int
    study: str
    renamed_from: str | None  # the bundle's study name when a clash forced a new one
    n_stimuli: int
    n_images: int
    n_batches: int
    n_restored_batches: int  # batches restored from stored rows instead of their file
    n_predictions: int
    n_models: int


# ------------------------------------------------------------------------------------- export


def export_bundle(
    session: Session, study_id: int, out: Path, *, include_images: bool = True
) -> ExportSummary:
    """Write the study as a bundle ZIP at ``out``; ``include_images=False`` leaves out the image
    bytes and thumbnails (stimuli then keep their hashes and sizes only)."""
    study = get_study(session, study_id)
    stimuli = _export_stimuli(session, study_id, include_images)
    batches = _export_batches(session, study_id)
    predictions = _export_predictions(session, study_id)
    models = _export_models(session, {row["model_id"] for row in predictions})
    documents = {
        "study.json": _study_record(study),
        "stimuli.json": stimuli,
        "batches.json": batches,
        "predictions.json": predictions,
        "models.json": models,
    }
    files = {f"files/{batch['sha256']}": batch["sha256"] for batch in batches}
    images = {f"images/{row['sha256']}": row["sha256"] for row in stimuli} if include_images else {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, dict[str, object]] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, document in documents.items():
            members[name] = _write_member(archive, name, _json_bytes(document))
        for name, sha in {**files, **images}.items():
            members[name] = _write_blob(archive, name, sha)
        manifest = _manifest(session, study, include_images, documents, members)
        archive.writestr(MANIFEST, _json_bytes(manifest))
    return ExportSummary(
        out, study.name, len(stimuli), len(images), len(batches), len(predictions), len(models),
        out.stat().st_size,
    )


def _study_record(study: Study) -> dict[str, Any]:
    return {
        "name": study.name, "description": study.description, "is_demo": study.is_demo,
        "stimulus_key": study.stimulus_key, "key_case_insensitive": study.key_case_insensitive,
        "created_at": _iso(study.created_at),
    }


def _export_stimuli(session: Session, study_id: int, include_images: bool) -> list[dict[str, Any]]:
    attributes: dict[int, dict[str, str | None]] = {}
    for stimulus_id, key, value in session.execute(
        select(StimulusAttribute.stimulus_id, StimulusAttribute.key, StimulusAttribute.value)
        .join(Stimulus).where(Stimulus.study_id == study_id)
    ):
        attributes.setdefault(stimulus_id, {})[key] = value
    rows = session.scalars(select(Stimulus).where(Stimulus.study_id == study_id).order_by(Stimulus.id))
    return [
        {
            "path": s.path, "sha256": s.sha256, "media_type": s.media_type, "width": s.width,
            "height": s.height, "intended_emotion": s.intended_emotion, "precropped": s.precropped,
            "created_at": _iso(s.created_at), "attributes": attributes.get(s.id, {}),
            "thumbnail": s.thumbnail.hex() if include_images else None,
        }
        for s in rows
    ]


def _export_batches(session: Session, study_id: int) -> list[dict[str, Any]]:
    paths = dict(session.execute(select(Stimulus.id, Stimulus.path).where(Stimulus.study_id == study_id)).all())
    batches = []
    for batch in session.scalars(
        select(RatingBatch).where(RatingBatch.study_id == study_id, visible_batches())
        .order_by(RatingBatch.id)
    ):
        ratings = session.execute(
            select(*(getattr(Rating, column) for column in STORED_COLUMNS))
            .where(Rating.batch_id == batch.id).order_by(Rating.id)
        ).all()
        batches.append({
            "file_name": batch.file_name, "sha256": batch.sha256, "uploaded_by": batch.uploaded_by,
            "uploaded_at": _iso(batch.uploaded_at), "layout": batch.layout, "mapping": batch.mapping,
            "scales": batch.scales, "label_map": batch.label_map, "n_rows": batch.n_rows,
            "n_rejected": batch.n_rejected, "excluded": batch.excluded,
            "deleted_at": _iso(batch.deleted_at), "note": batch.note, "batch_id": batch.id,
            "ratings": [[paths[row[0]], *row[1:]] for row in ratings],
        })
    return batches


def _export_predictions(session: Session, study_id: int) -> list[dict[str, Any]]:
    shas = select(Stimulus.sha256).where(Stimulus.study_id == study_id)
    rows = session.scalars(
        select(Prediction)
        .where(Prediction.stimulus_sha256.in_(shas), visible_in(study_id))
        .order_by(Prediction.id)
    )
    return [
        {
            "stimulus_sha256": p.stimulus_sha256, "study_scoped": p.study_id is not None,
            "model_id": p.model_id, "checkpoint_sha256": p.checkpoint_sha256,
            "preprocessing": p.preprocessing, "detector": p.detector, "status": p.status,
            "error": p.error, "label": p.label, "probs": p.probs, "valence": p.valence,
            "arousal": p.arousal, "extras": p.extras, "created_at": _iso(p.created_at),
        }
        for p in rows
    ]


def _export_models(session: Session, model_ids: set[str]) -> list[dict[str, Any]]:
    """Registered (card and imported) models behind the predictions; built-in ones live in code."""
    rows = session.scalars(
        select(RegisteredModel).where(RegisteredModel.id.in_(sorted(model_ids))).order_by(RegisteredModel.id)
    )
    return [
        {"id": row.id, "source": row.source, "card": row.card,
         "checkpoint_sha256": row.checkpoint_sha256, "created_at": _iso(row.created_at)}
        for row in rows
    ]


def _manifest(
    session: Session, study: Study, include_images: bool, documents: dict[str, Any],
    members: dict[str, dict[str, object]],
) -> dict[str, Any]:
    predictions = documents["predictions.json"]
    checkpoints: dict[str, set[str]] = {}
    for row in predictions:
        checkpoints.setdefault(row["model_id"], set()).add(row["checkpoint_sha256"])
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "schema_revision": MigrationContext.configure(session.connection()).get_current_revision(),
        "app_schema_head": schema_head(),
        "created_at": _iso(datetime.now(timezone.utc)),
        "study": study.name, "include_images": include_images,
        "counts": {
            "stimuli": len(documents["stimuli.json"]), "batches": len(documents["batches.json"]),
            "predictions": len(predictions), "registered_models": len(documents["models.json"]),
        },
        "model_checkpoints": {model: sorted(shas) for model, shas in sorted(checkpoints.items())},
        "versions": {name: version(name) for name in LIBRARIES},
        "members": members,
    }


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes) -> dict[str, object]:
    archive.writestr(name, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _write_blob(archive: zipfile.ZipFile, name: str, sha256: str) -> dict[str, object]:
    path = blob_path(sha256)
    if not path.exists():
        raise BundleError(
            f"the stored file {sha256[:12]}... ({name}) is missing from the blob folder; "
            "export with --no-images if only images are missing, or restore the data folder"
        )
    archive.write(path, name)
    return {"sha256": sha256, "size": path.stat().st_size}


# ------------------------------------------------------------------------------------- import


def schema_head() -> str | None:
    """The newest database schema revision this app knows."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


def import_bundle(
    session: Session, source: Path | bytes | BinaryIO, *, limits: ZipLimits = ZipLimits(),
    today: date | None = None,
    actor: Role,
) -> ImportSummary:
    """Check the bundle completely, then add it as a new study in the caller's transaction.

    Raises :class:`BundleError` before writing anything when the archive breaks a ZIP rule, a
    member's hash differs from the manifest, the bundle comes from a newer app, an image does
    not decode, or a model id is registered here with a different card.
    """
    require(actor, Action.IMPORT_BUNDLE)
    with _open_archive(source) as archive:
        _check_archive(archive, limits)
        manifest = _read_manifest(archive)
        _check_versions(manifest)
        _check_members(archive, manifest, limits)
        documents = {name: json.loads(archive.read(name)) for name in (
            "study.json", "stimuli.json", "batches.json", "predictions.json", "models.json")}
        images = _check_images(archive, documents["stimuli.json"], manifest)
        _check_models(session, documents["models.json"])
        for sha in images:
            with archive.open(f"images/{sha}") as stream:
                store_stream(stream, limit=limits.max_entry_bytes)
        for batch in documents["batches.json"]:
            store_bytes(archive.read(f"files/{batch['sha256']}"))
    return _write_study(session, documents, manifest, today or date.today(), actor=actor)


def _open_archive(source: Path | bytes | BinaryIO) -> zipfile.ZipFile:
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise BundleError(f"not a readable ZIP archive ({error}); export the bundle again") from error


def _check_archive(archive: zipfile.ZipFile, limits: ZipLimits) -> None:
    """The stimulus upload rules: entry count, safe relative paths, per-entry and total sizes."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise BundleError(f"the bundle has {len(infos):,} entries, above the {limits.max_entries:,} limit")
    for info in infos:
        path, problem = _check_path(info.filename)
        problem = problem or _entry_problem(info, limits)
        if problem or path != info.filename:
            raise BundleError(f"bundle entry {info.filename!r}: {problem or 'not a plain relative path'}")
    problem = _archive_problem(infos, limits)
    if problem:
        raise BundleError(f"the bundle is refused: {problem}")


def _read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise BundleError("the ZIP has no manifest.json: it is not a FaceAgree study bundle") from None
    if info.file_size > MANIFEST_LIMIT:
        raise BundleError("manifest.json is implausibly large; the bundle is refused")
    try:
        manifest = json.loads(archive.read(info))
    except ValueError as error:
        raise BundleError(f"manifest.json is not valid JSON ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("manifest.json does not describe a FaceAgree study bundle")
    return manifest


def _check_versions(manifest: dict[str, Any]) -> None:
    revision = manifest.get("schema_revision")
    newer_format = int(manifest.get("format_version", 0)) > FORMAT_VERSION
    if newer_format or revision not in known_revisions():
        raise BundleError(
            f"this bundle was written by a newer FaceAgree (bundle format "
            f"{manifest.get('format_version')}, database schema {revision!r}; this app reads format "
            f"{FORMAT_VERSION} up to schema {schema_head()!r}). Update the app, then import again."
        )


def _check_members(archive: zipfile.ZipFile, manifest: dict[str, Any], limits: ZipLimits) -> None:
    """Every entry listed with the right hash, and nothing unlisted."""
    listed = manifest.get("members") or {}
    present = {name for name in archive.namelist() if name != MANIFEST}
    if present - set(listed) or set(listed) - present:
        extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
        raise BundleError(f"the bundle's members differ from its manifest (unlisted: {extra[:5]}, "
                          f"missing: {missing[:5]}); export it again")
    for name in sorted(present):
        if _member_sha256(archive, name, limits.max_entry_bytes) != listed[name].get("sha256"):
            raise BundleError(f"bundle member {name!r} does not match its sha256 in the manifest "
                              "(damaged or edited); export the bundle again")


def _member_sha256(archive: zipfile.ZipFile, name: str, limit: int) -> str:
    digest, size = hashlib.sha256(), 0
    with archive.open(name) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            size += len(chunk)
            if size > limit:
                raise BundleError(f"bundle member {name!r} expands beyond the per-file limit")
            digest.update(chunk)
    return digest.hexdigest()


def _check_images(archive: zipfile.ZipFile, stimuli: list[dict[str, Any]], manifest: dict[str, Any]) -> list[str]:
    """The distinct image hashes of the bundle, each decoded once like an uploaded image."""
    shas = sorted({row["sha256"] for row in stimuli}) if manifest.get("include_images") else []
    for sha in shas:
        if f"images/{sha}" not in manifest["members"]:
            raise BundleError(f"the image of stimulus {sha[:12]}... is missing from the bundle")
        try:
            inspect_image(io.BytesIO(archive.read(f"images/{sha}")))
        except ImageError as error:
            raise BundleError(f"bundle image {sha[:12]}... is not a usable image ({error})") from error
    return shas


def _check_models(session: Session, models: list[dict[str, Any]]) -> None:
    for model in models:
        row = session.get(RegisteredModel, model["id"])
        if row is not None and (row.source, row.card, row.checkpoint_sha256) != (
            model["source"], model["card"], model["checkpoint_sha256"]
        ):
            raise BundleError(
                f"a different {row.source} model named {model['id']!r} is registered here already; "
                "the bundle's predictions would be attributed to it. Rename one of them first."
            )


def _write_study(session: Session, documents: dict[str, Any], manifest: dict[str, Any], today: date, *, actor: Role) -> ImportSummary:
    record = documents["study.json"]
    name = _free_name(session, record["name"], today)
    study = Study(
        name=name, description=record["description"], is_demo=record["is_demo"],
        stimulus_key=record["stimulus_key"], key_case_insensitive=record["key_case_insensitive"],
        created_at=_parse(record["created_at"]),
    )
    session.add(study)
    session.flush()
    paths = _insert_stimuli(session, study.id, documents["stimuli.json"])
    restored = sum(_import_batch(session, study.id, batch, paths, actor=actor) for batch in documents["batches.json"])
    _insert_models(session, documents["models.json"])
    n_predictions = _insert_predictions(session, study.id, documents["predictions.json"])
    return ImportSummary(
        study.id, name, record["name"] if name != record["name"] else None,
        len(paths), len(documents["stimuli.json"]) if manifest.get("include_images") else 0,
        len(documents["batches.json"]), restored, n_predictions, len(documents["models.json"]),
    )


def _free_name(session: Session, name: str, today: date) -> str:
    """The bundle's name, or ``"<name> (imported <date>)"`` (then ``..., 2)``) on a clash."""
    candidates = [name, f"{name} (imported {today:%Y-%m-%d})"]
    candidates += (f"{name} (imported {today:%Y-%m-%d}, {n})" for n in range(2, 100))
    for candidate in candidates:
        if session.scalar(select(Study.id).where(Study.name == candidate)) is None:
            return candidate
    raise BundleError(f"a study named {name!r} was imported too often today; rename the copies")


def _insert_stimuli(session: Session, study_id: int, stimuli: list[dict[str, Any]]) -> dict[str, int]:
    """Stimulus rows copied as stored; returns path -> new row id."""
    placeholder = _placeholder_thumbnail()
    rows = [
        {
            "study_id": study_id, "path": s["path"], "sha256": s["sha256"], "media_type": s["media_type"],
            "width": s["width"], "height": s["height"], "intended_emotion": s["intended_emotion"],
            "precropped": s["precropped"], "created_at": _parse(s["created_at"]),
            "thumbnail": bytes.fromhex(s["thumbnail"]) if s["thumbnail"] else placeholder,
        }
        for s in stimuli
    ]
    for chunk in _chunks(rows):
        session.execute(insert(Stimulus), chunk)
    paths = dict(session.execute(select(Stimulus.path, Stimulus.id).where(Stimulus.study_id == study_id)).all())
    attributes = [
        {"stimulus_id": paths[s["path"]], "key": key, "value": value}
        for s in stimuli for key, value in s["attributes"].items()
    ]
    for chunk in _chunks(attributes):
        session.execute(insert(StimulusAttribute), chunk)
    return paths


def _placeholder_thumbnail() -> bytes:
    """A grey square standing in for a thumbnail left out of the bundle (no face shown)."""
    return thumbnail_jpeg(Image.new("RGB", (PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), (200, 200, 200)))


def _import_batch(session: Session, study_id: int, batch: dict[str, Any], paths: dict[str, int], *, actor: Role) -> bool:
    """Re-import one batch from its original file; True when it had to be restored from rows."""
    prepared = _reprepare(session, study_id, batch)
    stored = _stored_rows(batch, paths)
    if prepared is not None and _rows_of(prepared) == Counter(stored):
        batch_id = import_batch(
            session, study_id, prepared, file_name=batch["file_name"], data=read_blob(batch["sha256"]),
            uploaded_by=batch["uploaded_by"], partial=batch["n_rejected"] > 0, allow_duplicate=True,
            actor=actor,
        ).batch_id
        restored = False
    else:
        batch_id = _copy_batch(session, study_id, batch, paths)
        restored = True
    row = session.get(RatingBatch, batch_id)
    row.uploaded_at, row.deleted_at = _parse(batch["uploaded_at"]), _parse(batch["deleted_at"])
    row.excluded, row.note = batch["excluded"], batch["note"]
    if restored:
        row.note = (row.note + " " if row.note else "") + (
            "Restored from the bundle's stored rows: this app reads the original file differently."
        )
    return restored


def _reprepare(session: Session, study_id: int, batch: dict[str, Any]) -> PreparedRatings | None:
    """The batch's file validated again under its stored mapping; None when that fails."""
    try:
        frame = read_table(batch["file_name"], read_blob(batch["sha256"]))
        return prepare_ratings(
            frame, ColumnMapping.from_dict(batch["mapping"]), index=stimulus_index(session, study_id),
            scales={dim: Scale.from_dict(scale) for dim, scale in batch["scales"].items()},
            codes=batch["label_map"], repeats=policy_of(batch["mapping"]),
        )
    except ValueError:
        return None


def _stored_rows(batch: dict[str, Any], paths: dict[str, int]) -> list[tuple]:
    """The bundle's rows with stimulus row ids and vote raters back in their pending form."""
    old = f"votes#{batch['batch_id']}:"
    return [
        (paths[row[0]], _pending_rater(row[1], old), *row[2:])
        for row in batch["ratings"]
    ]


def _pending_rater(rater: str, old_prefix: str) -> str:
    pending = VOTE_RATER.format(batch=PENDING_BATCH, k="")
    return pending + rater[len(old_prefix):] if rater.startswith(old_prefix) else rater


def _rows_of(prepared: PreparedRatings) -> Counter[tuple]:
    table = prepared.ratings[STORED_COLUMNS]
    table = table.astype(object).where(table.notna(), None)
    return Counter(table.itertuples(index=False, name=None))


def _copy_batch(session: Session, study_id: int, batch: dict[str, Any], paths: dict[str, int]) -> int:
    row = RatingBatch(
        study_id=study_id, file_name=batch["file_name"], sha256=batch["sha256"],
        uploaded_by=batch["uploaded_by"], layout=batch["layout"], mapping=batch["mapping"],
        scales=batch["scales"], label_map=batch["label_map"], n_rows=batch["n_rows"],
        n_rejected=batch["n_rejected"],
    )
    session.add(row)
    session.flush()
    old = f"votes#{batch['batch_id']}:"
    ratings = [
        dict(zip(STORED_COLUMNS, (paths[r[0]], r[1].replace(old, f"votes#{row.id}:", 1), *r[2:])),
             batch_id=row.id)
        for r in batch["ratings"]
    ]
    for chunk in _chunks(ratings):
        session.execute(insert(Rating), chunk)
    return row.id


def _insert_models(session: Session, models: list[dict[str, Any]]) -> None:
    for model in models:
        if session.get(RegisteredModel, model["id"]) is None:
            session.add(RegisteredModel(
                id=model["id"], source=model["source"], card=model["card"],
                checkpoint_sha256=model["checkpoint_sha256"], created_at=_parse(model["created_at"]),
            ))
    session.flush()


def _insert_predictions(session: Session, study_id: int, predictions: list[dict[str, Any]]) -> int:
    """Study-scoped rows join the new study; shared computed rows are added unless cached here."""
    rows = []
    for p in predictions:
        row = {key: value for key, value in p.items() if key != "study_scoped"}
        if not p["study_scoped"] and _cached(session, row):
            continue
        rows.append({**row, "study_id": study_id if p["study_scoped"] else None,
                     "created_at": _parse(p["created_at"])})
    for chunk in _chunks(rows):
        session.execute(insert(Prediction), chunk)
    return len(rows)


def _cached(session: Session, p: dict[str, Any]) -> bool:
    return session.scalar(select(Prediction.id).where(
        Prediction.stimulus_sha256 == p["stimulus_sha256"], Prediction.model_id == p["model_id"],
        Prediction.checkpoint_sha256 == p["checkpoint_sha256"],
        Prediction.preprocessing == p["preprocessing"], Prediction.detector == p["detector"],
        Prediction.study_id.is_(None),
    ).limit(1)) is not None


# ------------------------------------------------------------------------------------- helpers


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start:start + CHUNK]
