"""Rating batches: all-or-nothing import, duplicate files, listing, exclusion, soft delete.

The duplicate-file guard is a unique index (one live guarded batch per file and study), so
concurrent imports of one file store it once; a deliberate duplicate has no ``dedupe_sha256``.

Two ways to import, both all-or-nothing for the user. :func:`import_batch` writes in the caller's
transaction (a bundle or the demo builds a whole study in one). :func:`import_batch_in_chunks`,
used by the Ratings page and the command line, holds SQLite's write lock only briefly so other
writers never wait long: the batch is claimed as ``importing`` (invisible to every reader, see
:func:`db.models.visible_batches`), its ratings go in chunk by chunk in separate transactions,
and a last one makes it ``active``. A failed import removes its half batch; one whose process
died stops refreshing its heartbeat and is removed by the next import after :data:`STALE_IMPORT`.
Human ratings cannot be regenerated: a deleted batch stays restorable for :data:`UNDO_WINDOW`
and the uploaded file itself is kept in content-addressed storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from sqlalchemy import Update, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, require
from core.io.storage import read_blob, sha256_bytes, store_bytes
from core.ratings.layouts import PreparedRatings, StimulusIndex, assign_vote_raters
from core.ratings.scales import Scale
from db.bulk import insert_columns
from db.models import (
    ABANDONED, ACTIVE, IMPORTING, Rating, RatingBatch, utcnow, visible_batches,
)
from db.repeats import refuse_repeats
from db.stimuli import get_study, key_index

UNDO_WINDOW = timedelta(hours=24)
STORED_COLUMNS = [
    "stimulus_id", "rater", "emotion", "emotion_raw",
    "valence", "arousal", "valence_raw", "arousal_raw", "occurrence",
]
NOTE_ROWS = 20  # rejected row numbers spelled out in a batch's note
# Ratings per executemany: bounds the parameter rows Python holds at once (100k rows in one call
# held about 90 MB of dicts while the per-row cost stays the same).
# Also the rows of one transaction of a chunked import (about 0.1 s of write lock each).
INSERT_CHUNK = 10_000
# An importing batch whose heartbeat is this old was abandoned by a process that died.
STALE_IMPORT = timedelta(seconds=60)


class ImportRejected(ValueError):
    """Validation found problems and the caller did not ask to import the valid rows only."""

    def __init__(self, prepared: PreparedRatings, message: str | None = None) -> None:
        self.prepared = prepared
        rows = len(prepared.rejected_rows)
        super().__init__(message or (
            f"{rows} of {prepared.n_file_rows} rows have problems, so nothing was imported. "
            "Fix them and upload again, or import the valid rows only and download the "
            "rejected ones."
        ))


class DuplicateFileError(ValueError):
    """The same file (by sha256) is already imported in this study."""

    def __init__(self, batch: RatingBatch) -> None:
        self.batch_id = batch.id
        importing = batch.import_state != ACTIVE
        when = f"{_aware(batch.uploaded_at):%Y-%m-%d %H:%M} UTC"
        super().__init__(
            f"this file {'is being imported right now' if importing else 'was already imported'}"
            f" as batch #{batch.id} ({batch.file_name}, {when}"
            + (f" by {batch.uploaded_by}" if batch.uploaded_by else "")
            + (
                "). If that import was interrupted, try again in a minute." if importing
                else "). Import it again only if you really mean to (allow duplicates)."
            )
        )


class ImportAbandoned(RuntimeError):
    """A chunked import paused longer than :data:`STALE_IMPORT` and another import removed it."""


class UndoExpired(ValueError):
    """The batch was deleted longer ago than the undo window (or is not deleted)."""


@dataclass(frozen=True)
class ImportResult:
    batch_id: int
    n_ratings: int
    rejected_rows: list[int]


@dataclass(frozen=True)
class BatchSummary:
    """One batch with its provenance and counts, as listed on the Ratings page."""

    id: int
    file_name: str
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    layout: str
    mapping: dict[str, Any]
    scales: dict[str, Any]
    label_map: dict[str, Any]
    n_ratings: int
    n_raters: int
    n_stimuli: int
    n_rejected: int
    excluded: bool
    deleted_at: datetime | None
    undo_until: datetime | None
    note: str


def stimulus_index(session: Session, study_id: int) -> StimulusIndex:
    """The study's stimulus ids as rating files name them (raises AmbiguousKeyError)."""
    study = get_study(session, study_id)
    return StimulusIndex.build(
        key_index(session, study_id), study.key_case_insensitive, study.stimulus_key
    )


def find_duplicate_file(session: Session, study_id: int, sha256: str) -> RatingBatch | None:
    """The first live (not deleted) batch of this study imported, or being imported, from a file
    with this hash."""
    return session.scalar(
        select(RatingBatch)
        .where(
            RatingBatch.study_id == study_id,
            RatingBatch.sha256 == sha256,
            RatingBatch.deleted_at.is_(None),
            RatingBatch.import_state != ABANDONED,
        )
        .order_by(RatingBatch.id)
        .limit(1)
    )


def import_batch(
    session: Session,
    study_id: int,
    prepared: PreparedRatings,
    *,
    file_name: str,
    data: bytes,
    uploaded_by: str = "",
    partial: bool = False,
    allow_duplicate: bool = False,
    actor: Role,
) -> ImportResult:
    """Store a validated rating file as one batch, in the caller's transaction.

    Raises :class:`ImportRejected` when rows were rejected and ``partial`` is False (nothing is
    written), :class:`DuplicateFileError` for a file already imported unless
    ``allow_duplicate``, and ``RepeatsRefused`` when the batch's repeat policy is ``refuse`` and
    it repeats ratings of earlier batches. With ``partial`` only the valid rows are stored; the
    rejected row numbers are returned and noted on the batch.
    """
    require(actor, Action.UPLOAD_RATINGS)
    batch = _add_batch(
        session, study_id, prepared, file_name, data, uploaded_by, allow_duplicate, partial
    )
    ratings = _batch_ratings(prepared, batch.id)
    for start in range(0, len(ratings), INSERT_CHUNK):
        chunk = ratings.iloc[start:start + INSERT_CHUNK]
        _insert_ratings(session, _rating_columns(chunk, batch.id))
    return ImportResult(batch.id, len(prepared.ratings), prepared.rejected_rows)


def import_batch_in_chunks(
    factory: sessionmaker[Session],
    study_id: int,
    prepared: PreparedRatings,
    *,
    file_name: str,
    data: bytes,
    uploaded_by: str = "",
    partial: bool = False,
    allow_duplicate: bool = False,
    actor: Role,
) -> ImportResult:
    """Store a validated rating file as one batch in short transactions of its own.

    Same refusals and result as :func:`import_batch`. The batch is invisible until its last
    chunk is stored; on any error its rows are removed again and the error is raised. Call it
    outside any write transaction of ``factory``'s database (it would wait for that one).
    """
    require(actor, Action.UPLOAD_RATINGS)
    remove_abandoned_imports(factory)
    batch_id = _claim_batch(
        factory, study_id, prepared, file_name, data, uploaded_by, allow_duplicate, partial
    )
    try:
        ratings = _batch_ratings(prepared, batch_id)
        for start in range(0, len(ratings), INSERT_CHUNK):
            columns = _rating_columns(ratings.iloc[start:start + INSERT_CHUNK], batch_id)
            with factory.begin() as session:  # the write lock is held from here to the commit
                _touch_import(session, batch_id)
                _insert_ratings(session, columns)
        with factory.begin() as session:
            _touch_import(session, batch_id, state=ACTIVE)
    except BaseException:
        _remove_failed_import(factory, batch_id)
        raise
    return ImportResult(batch_id, len(prepared.ratings), prepared.rejected_rows)


def remove_abandoned_imports(factory: sessionmaker[Session], now: datetime | None = None) -> int:
    """Remove batches whose import stopped refreshing its heartbeat :data:`STALE_IMPORT` ago
    (its process died): they were never visible. Returns the number of batches removed."""
    cutoff = (now or utcnow()) - STALE_IMPORT
    with factory.begin() as session:
        # The staleness test and the state change are one statement: an import that refreshes
        # its heartbeat meanwhile is never taken for abandoned.
        session.execute(_abandon(
            RatingBatch.import_state == IMPORTING,
            or_(RatingBatch.import_heartbeat.is_(None), RatingBatch.import_heartbeat < cutoff),
        ))
    with factory() as session:
        abandoned = session.scalars(
            select(RatingBatch.id).where(RatingBatch.import_state == ABANDONED)
        ).all()
    for batch_id in abandoned:
        _remove_abandoned(factory, batch_id)
    return len(abandoned)


def _check_importable(prepared: PreparedRatings, partial: bool) -> None:
    if not prepared.ok and not partial:
        raise ImportRejected(prepared)
    if prepared.ratings.empty:
        raise ImportRejected(prepared, "no valid rows to import; nothing was stored.")


def _new_batch(
    study_id: int, prepared: PreparedRatings, file_name: str, sha: str, uploaded_by: str,
    allow_duplicate: bool, **state: Any,
) -> RatingBatch:
    return RatingBatch(
        study_id=study_id, file_name=file_name, sha256=sha,
        dedupe_sha256=None if allow_duplicate else sha, uploaded_by=uploaded_by,
        layout=prepared.layout, mapping=prepared.mapping, scales=prepared.scales,
        label_map=prepared.label_map, n_rows=len(prepared.ratings),
        n_rejected=len(prepared.rejected_rows), note=_rejection_note(prepared.rejected_rows),
        **state,
    )


def _claim_batch(
    factory: sessionmaker[Session], study_id: int, prepared: PreparedRatings, file_name: str,
    data: bytes, uploaded_by: str, allow_duplicate: bool, partial: bool,
) -> int:
    """The new batch, still importing, in a short transaction that takes the file's guard."""
    with factory.begin() as session:
        return _add_batch(
            session, study_id, prepared, file_name, data, uploaded_by, allow_duplicate, partial,
            import_state=IMPORTING, import_heartbeat=utcnow(),
        ).id


def _add_batch(
    session: Session, study_id: int, prepared: PreparedRatings, file_name: str, data: bytes,
    uploaded_by: str, allow_duplicate: bool, partial: bool, **state: Any,
) -> RatingBatch:
    """The refusals of :func:`import_batch`, then the file stored and its batch row flushed
    (taking the file's guard), with no ratings yet."""
    sha = sha256_bytes(data)
    duplicate = None if allow_duplicate else find_duplicate_file(session, study_id, sha)
    if duplicate is not None:
        raise DuplicateFileError(duplicate)
    _check_importable(prepared, partial)
    refuse_repeats(session, study_id, prepared)
    store_bytes(data)
    batch = _new_batch(study_id, prepared, file_name, sha, uploaded_by, allow_duplicate, **state)
    session.add(batch)
    _flush_guarded(session, study_id, sha)
    return batch


def _touch_import(session: Session, batch_id: int, state: str = IMPORTING) -> None:
    """Refresh the heartbeat of an import (or finish it with ``state``); raises
    :class:`ImportAbandoned` when another import removed the batch as abandoned meanwhile."""
    touched = session.execute(
        update(RatingBatch)
        .where(RatingBatch.id == batch_id, RatingBatch.import_state == IMPORTING)
        .values(import_state=state, import_heartbeat=None if state == ACTIVE else utcnow())
    )
    if touched.rowcount != 1:
        raise ImportAbandoned(
            f"batch #{batch_id} paused for more than {STALE_IMPORT.seconds} s and was removed "
            "as abandoned; nothing of it was stored. Import the file again."
        )


def _abandon(*where: Any) -> Update:
    """Mark importing batches abandoned and release their file's duplicate guard."""
    return update(RatingBatch).where(*where).values(import_state=ABANDONED, dedupe_sha256=None)


def _remove_failed_import(factory: sessionmaker[Session], batch_id: int) -> None:
    try:
        with factory.begin() as session:
            session.execute(
                _abandon(RatingBatch.id == batch_id, RatingBatch.import_state != ACTIVE)
            )
        _remove_abandoned(factory, batch_id)
    except SQLAlchemyError:
        pass  # the batch stays invisible; the next import removes it once its heartbeat is stale


def _remove_abandoned(factory: sessionmaker[Session], batch_id: int) -> None:
    """Delete an abandoned batch's ratings chunk by chunk (short transactions), then the batch."""
    chunk = select(Rating.id).where(Rating.batch_id == batch_id).limit(INSERT_CHUNK)
    removed = INSERT_CHUNK
    while removed == INSERT_CHUNK:
        with factory.begin() as session:
            removed = session.execute(
                delete(Rating).where(Rating.id.in_(chunk.scalar_subquery()))
            ).rowcount
    with factory.begin() as session:
        session.execute(delete(RatingBatch).where(
            RatingBatch.id == batch_id, RatingBatch.import_state == ABANDONED
        ))


def _flush_guarded(session: Session, study_id: int, sha256: str) -> None:
    """Insert the new batch; another import of the same file that committed first (the unique
    index ux_rating_batch_live_file) becomes :class:`DuplicateFileError` naming that batch."""
    try:
        session.flush()
    except IntegrityError as error:
        # The caller's transaction is spoilt (and on PostgreSQL aborted): look in a fresh one.
        with Session(session.get_bind()) as fresh:
            existing = find_duplicate_file(fresh, study_id, sha256)
        if existing is None:
            raise
        raise DuplicateFileError(existing) from error


def _batch_ratings(prepared: PreparedRatings, batch_id: int) -> pd.DataFrame:
    """The rows to store; vote raters are named after their batch."""
    if prepared.layout == "votes":
        return assign_vote_raters(prepared.ratings, batch_id)
    return prepared.ratings


def _insert_ratings(session: Session, columns: dict[str, list[Any]]) -> None:
    """One chunk of plain column values on the backend's fast path (db.bulk)."""
    insert_columns(session, Rating.__table__, columns)


def _rating_columns(ratings: pd.DataFrame, batch_id: int) -> dict[str, list[Any]]:
    """Column name -> plain Python values (None for missing) for the driver."""
    columns = {
        name: ratings[name].astype(object).where(ratings[name].notna(), None).tolist()
        for name in STORED_COLUMNS
    }
    columns["stimulus_id"] = [int(value) for value in columns["stimulus_id"]]
    columns["batch_id"] = [batch_id] * len(ratings)
    return columns


def _rejection_note(rows: list[int]) -> str:
    if not rows:
        return ""
    listed = ", ".join(str(row) for row in rows[:NOTE_ROWS])
    more = f" and {len(rows) - NOTE_ROWS} more" if len(rows) > NOTE_ROWS else ""
    return f"{len(rows)} file rows rejected at import (rows {listed}{more})."


def list_batches(
    session: Session, study_id: int, *, include_deleted: bool = True, now: datetime | None = None
) -> list[BatchSummary]:
    """Batches of a study, newest first, with rating/rater/stimulus counts."""
    counts = {
        batch_id: (n, raters, stimuli)
        for batch_id, n, raters, stimuli in session.execute(
            select(
                Rating.batch_id, func.count(), func.count(func.distinct(Rating.rater)),
                func.count(func.distinct(Rating.stimulus_id)),
            )
            .join(RatingBatch)
            .where(RatingBatch.study_id == study_id, visible_batches())
            .group_by(Rating.batch_id)
        )
    }
    query = select(RatingBatch).where(RatingBatch.study_id == study_id, visible_batches())
    if not include_deleted:
        query = query.where(RatingBatch.deleted_at.is_(None))
    now = now or utcnow()
    return [
        _summary(batch, counts.get(batch.id, (0, 0, 0)), now)
        for batch in session.scalars(query.order_by(RatingBatch.id.desc()))
    ]


def _summary(batch: RatingBatch, counts: tuple[int, int, int], now: datetime) -> BatchSummary:
    deleted = _aware(batch.deleted_at) if batch.deleted_at else None
    undo_until = deleted + UNDO_WINDOW if deleted else None
    return BatchSummary(
        id=batch.id, file_name=batch.file_name, sha256=batch.sha256,
        uploaded_by=batch.uploaded_by, uploaded_at=_aware(batch.uploaded_at),
        layout=batch.layout, mapping=batch.mapping, scales=batch.scales,
        label_map=batch.label_map, n_ratings=counts[0], n_raters=counts[1],
        n_stimuli=counts[2], n_rejected=batch.n_rejected, excluded=batch.excluded,
        deleted_at=deleted, undo_until=undo_until if undo_until and undo_until > now else None,
        note=batch.note,
    )


def batches_frame(batches: list[BatchSummary]) -> pd.DataFrame:
    """The batch list as a table for display and export (provenance in plain columns)."""
    return pd.DataFrame([
        {
            "batch": b.id, "file": b.file_name, "layout": b.layout, "ratings": b.n_ratings,
            "raters": b.n_raters, "stimuli": b.n_stimuli, "rejected rows": b.n_rejected,
            "uploaded by": b.uploaded_by, "uploaded at (UTC)": b.uploaded_at,
            "excluded": b.excluded, "deleted at (UTC)": b.deleted_at,
            "scales": ", ".join(
                f"{dim} {Scale.from_dict(scale).label}" for dim, scale in b.scales.items()
            ),
            "label codes": ", ".join(f"{k}={v}" for k, v in b.label_map.items()),
            "columns": ", ".join(f"{role}={col}" for role, col in b.mapping.get("columns", {}).items()),
            "sha256": b.sha256, "note": b.note,
        }
        for b in batches
    ])


def set_excluded(session: Session, batch_id: int, excluded: bool, *, actor: Role) -> None:
    """Exclude a batch from every analysis (or include it again); nothing is deleted."""
    require(actor, Action.EXCLUDE_BATCH)
    _batch(session, batch_id).excluded = excluded


def delete_batch(session: Session, batch_id: int, now: datetime | None = None, *, actor: Role) -> datetime:
    """Soft-delete: the batch disappears from analyses and can be restored until the deadline
    returned (deleted at + :data:`UNDO_WINDOW`)."""
    require(actor, Action.DELETE_BATCH)
    batch = _batch(session, batch_id)
    if batch.deleted_at is None:
        batch.deleted_at = now or utcnow()
    return _aware(batch.deleted_at) + UNDO_WINDOW


def undo_delete(session: Session, batch_id: int, now: datetime | None = None, *, actor: Role) -> None:
    """Restore a soft-deleted batch; raises :class:`UndoExpired` after the undo window and
    :class:`DuplicateFileError` when its file was imported again since (delete that one first)."""
    require(actor, Action.DELETE_BATCH)
    batch = _batch(session, batch_id)
    if batch.deleted_at is None:
        raise UndoExpired(f"batch #{batch_id} is not deleted")
    if _aware(batch.deleted_at) + UNDO_WINDOW < (now or utcnow()):
        raise UndoExpired(
            f"batch #{batch_id} was deleted more than {UNDO_WINDOW} ago; upload its file again"
        )
    if batch.dedupe_sha256 is not None:
        guard = session.scalar(select(RatingBatch).where(
            RatingBatch.study_id == batch.study_id,
            RatingBatch.dedupe_sha256 == batch.dedupe_sha256,
            RatingBatch.deleted_at.is_(None),
        ))
        if guard is not None:
            raise DuplicateFileError(guard)
    batch.deleted_at = None


def purge_deleted(
    session: Session, older_than: timedelta = UNDO_WINDOW, now: datetime | None = None,
    *, actor: Role,
) -> int:
    """Remove batches soft-deleted more than ``older_than`` ago, with their ratings.

    Returns the number of batches removed. The uploaded files stay in blob storage.
    """
    require(actor, Action.PURGE_BATCHES)
    cutoff = (now or utcnow()) - older_than
    deleted = session.execute(
        select(RatingBatch.id, RatingBatch.deleted_at).where(RatingBatch.deleted_at.is_not(None))
    ).all()
    expired = [batch_id for batch_id, when in deleted if _aware(when) < cutoff]
    if expired:
        session.execute(delete(Rating).where(Rating.batch_id.in_(expired)))
        session.execute(delete(RatingBatch).where(RatingBatch.id.in_(expired)))
    return len(expired)


def declared_scales(session: Session, study_id: int) -> dict[str, list[Scale]]:
    """Scales each dimension was declared with in the study's batches (not deleted), newest first.

    The batches remember them, so the next batch's suggestion and its scale check need no table.
    """
    query = (
        select(RatingBatch.scales)
        .where(RatingBatch.study_id == study_id, RatingBatch.deleted_at.is_(None))
        .where(visible_batches())
        .order_by(RatingBatch.id.desc())
    )
    found: dict[str, list[Scale]] = {}
    for scales in session.scalars(query):
        for dim, scale in (scales or {}).items():
            found.setdefault(dim, []).append(Scale.from_dict(scale))
    return found

def batch_file(session: Session, batch_id: int) -> bytes:
    """The file exactly as uploaded for this batch."""
    return read_blob(_batch(session, batch_id).sha256)


def _batch(session: Session, batch_id: int) -> RatingBatch:
    batch = session.get(RatingBatch, batch_id)
    if batch is None:
        raise LookupError(f"rating batch {batch_id} does not exist")
    return batch


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
