"""Stimulus import: single images, folders and ZIP archives; metadata tables.

Guarantees (issue 2, "bad input"): every file gets a line in the report (added, duplicate,
conflict, error, ignored) naming the file, the reason and what to do; a bad file never aborts
the others; nothing already stored is replaced. ZIP entries are streamed one at a time through a
size-limited spool, so peak memory depends on the largest entry, not on the archive.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import pickle
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd
from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from core.io.images import MAX_PIXELS, ImageError, ImageInfo, inspect_image
from core.io.spreadsheet import csv_rows_bytes
from core.io.storage import store_stream
from core.io.tabular import read_table
from core.ratings.labels import to_canonical
from core.ratings.stimulus_keys import KEY_MODES, lookup_key, normalise_path, stimulus_key
from db.models import Stimulus, Study, utcnow
from db.stimuli import get_study, key_index, stimulus_rows, upsert_attributes

__all__ = [
    "KEY_MODES", "MetadataImportReport", "ReportEntry", "RowIssue", "StimulusImportReport",
    "ZipLimits", "import_files", "import_metadata", "lookup_key", "parse_code_map",
    "stimulus_key",
]

Progress = Callable[[int, int], None]
Source = BinaryIO | bytes | Path
SPOOL_IN_MEMORY = 32 << 20  # entries up to this size never touch the temp folder
MAX_PATH_LENGTH = 1000  # Stimulus.path column width
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xls")
TABLE_HINT = " Metadata tables are imported separately (Metadata tab, or `import-metadata`)."
NESTED_ZIP_HINT = " A ZIP inside a ZIP is not opened: extract it and upload the inner ZIP itself."
INSERT_CHUNK = 500  # stimulus rows per executemany


@dataclass(frozen=True)
class ZipLimits:
    """ZIP-bomb guards. Sizes are uncompressed bytes."""

    max_entry_bytes: int = 256 << 20  # a 50 MP uncompressed RGB TIFF is ~150 MB
    max_total_bytes: int = 16 << 30
    max_entries: int = 100_000
    max_ratio: float = 100.0  # uncompressed / compressed; images rarely exceed 10
    ratio_floor_bytes: int = 16 << 20  # small entries may compress well (flat BMPs)


@dataclass(frozen=True)
class ReportEntry:
    """The outcome for one uploaded file or ZIP entry."""

    file: str  # as uploaded ("faces.zip: set1/a.jpg" for ZIP entries)
    path: str  # stimulus path in the study ("" when none could be derived)
    status: str  # added | duplicate | conflict | error | ignored
    message: str


@dataclass
class StimulusImportReport:
    entries: list[ReportEntry] = field(default_factory=list)

    def _with(self, status: str) -> list[ReportEntry]:
        return [entry for entry in self.entries if entry.status == status]

    @property
    def added(self) -> list[ReportEntry]:
        return self._with("added")

    @property
    def duplicates(self) -> list[ReportEntry]:
        return self._with("duplicate")

    @property
    def conflicts(self) -> list[ReportEntry]:
        return self._with("conflict")

    @property
    def errors(self) -> list[ReportEntry]:
        return self._with("error")

    @property
    def ignored(self) -> list[ReportEntry]:
        return self._with("ignored")

    @property
    def ok(self) -> bool:
        """True when no file was rejected (duplicates and ignored entries are fine)."""
        return not self.errors and not self.conflicts

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.duplicates)} duplicates skipped, "
            f"{len(self.conflicts)} conflicts, {len(self.errors)} errors, "
            f"{len(self.ignored)} ignored"
        )

    def to_csv(self) -> bytes:
        """The report as CSV (UTF-8 with BOM so Excel shows non-ASCII names)."""
        return csv_rows_bytes(
            ["file", "stimulus_path", "status", "message"],
            [(e.file, e.path, e.status, e.message) for e in self.entries],
        )


@dataclass(frozen=True)
class _Job:
    """One image to import: where it came from and how to open it."""

    file: str
    path: str
    open: Callable[[], BinaryIO]


def import_files(
    session: Session,
    study_id: int,
    files: Iterable[tuple[str, Source]],
    *,
    progress: Progress | None = None,
    precropped: bool = False,
    limits: ZipLimits = ZipLimits(),
    max_pixels: int = MAX_PIXELS,
    actor: Role,
) -> StimulusImportReport:
    """Import images and ZIP archives into a study; returns the per-file report.

    ``files`` yields (name, content) with content as bytes, a seekable binary stream or a Path.
    Every image is first decoded, hashed, stored as a blob (content-addressed, so never wrong)
    and thumbnailed without writing to the database; then all new rows are inserted at once in
    the caller's session, which commits (or rolls back) them as a whole. So the import holds
    the database's write lock only for the final inserts, not while images are decoded.
    """
    require(actor, Action.UPLOAD_STIMULI)
    report = StimulusImportReport()
    study = get_study(session, study_id)
    with ExitStack() as stack:
        importer = _Importer(session, study, report, precropped, limits, max_pixels, stack)
        jobs = [job for name, source in files for job in _plan(name, source, limits, report, stack)]
        if progress:
            progress(0, len(jobs))
        for done, job in enumerate(jobs, start=1):
            importer.run(job)
            if progress:
                progress(done, len(jobs))
        importer.insert_staged()
    return report


def iter_folder(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, file) for every file below ``folder``, sorted; for the CLI."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield path.relative_to(folder).as_posix(), path


@dataclass(frozen=True)
class _Staged:
    """An image read and stored as a blob whose row is not inserted yet."""

    entry: int  # position of its "added" line in the report
    path: str
    sha256: str
    info: ImageInfo


class _StagedRows:
    """Staged images spooled to a temporary file: thumbnails of a big ZIP stay off the heap."""

    def __init__(self, stack: ExitStack) -> None:
        self.file = stack.enter_context(tempfile.TemporaryFile())
        self.count = 0

    def append(self, staged: _Staged) -> None:
        pickle.dump(staged, self.file)
        self.count += 1

    def __iter__(self) -> Iterator[_Staged]:
        self.file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.file)


class _Importer:
    """Stages one image at a time, keeping the study's path, content and key indexes current."""

    def __init__(
        self, session: Session, study: Study, report: StimulusImportReport,
        precropped: bool, limits: ZipLimits, max_pixels: int, stack: ExitStack,
    ) -> None:
        self.session, self.study, self.report = session, study, report
        self.precropped, self.limits, self.max_pixels = precropped, limits, max_pixels
        self.staged = _StagedRows(stack)
        self._load_indexes()

    def _load_indexes(self) -> None:
        self.by_path: dict[str, str] = {}
        self.by_sha: dict[str, str] = {}
        self.by_key: dict[str, tuple[str, str]] = {}
        for _, path, sha in stimulus_rows(self.session, self.study.id):
            self._remember(path, sha)

    def _remember(self, path: str, sha: str) -> None:
        self.by_path[path] = sha
        self.by_sha.setdefault(sha, path)
        self.by_key.setdefault(self._key(path), (path, sha))

    def _key(self, path: str) -> str:
        return stimulus_key(path, self.study.stimulus_key, self.study.key_case_insensitive)

    def _note(self, job: _Job, status: str, message: str) -> None:
        self.report.entries.append(ReportEntry(job.file, job.path, status, message))

    def insert_staged(self) -> None:
        """Insert the staged rows, re-checked against the rows stored meanwhile (another import
        into the same study may have committed while this one read its images)."""
        self._load_indexes()
        rows: list[dict] = []
        for staged in self.staged:
            entry = self.report.entries[staged.entry]
            verdict = self._verdict(staged.path, staged.sha256)
            if verdict:
                self.report.entries[staged.entry] = ReportEntry(entry.file, entry.path, *verdict)
                continue
            self._remember(staged.path, staged.sha256)
            rows.append(self._row(staged))
            if len(rows) == INSERT_CHUNK:
                self._insert(rows)
                rows = []
        if rows:
            self._insert(rows)

    def _row(self, staged: _Staged) -> dict:
        info = staged.info
        return {
            "study_id": self.study.id, "path": staged.path, "sha256": staged.sha256,
            "media_type": info.media_type, "width": info.width, "height": info.height,
            "thumbnail": info.thumbnail, "precropped": self.precropped, "created_at": utcnow(),
        }

    def _insert(self, rows: list[dict]) -> None:
        self.session.execute(insert(Stimulus), rows)

    def run(self, job: _Job) -> None:
        try:
            with job.open() as stream, _Spool(stream, self.limits.max_entry_bytes) as (spool, sha):
                verdict = self._verdict(job.path, sha)
                if verdict:
                    self._note(job, *verdict)
                    return
                info = inspect_image(spool, max_pixels=self.max_pixels)
                spool.seek(0)
                stored_sha, _ = store_stream(spool, limit=self.limits.max_entry_bytes)
        except ImageError as error:
            hint = TABLE_HINT if job.path.lower().endswith(TABLE_SUFFIXES) else ""
            hint = NESTED_ZIP_HINT if job.path.lower().endswith(".zip") else hint
            self._note(job, "error", f"{error}{hint}")
            return
        except (
            ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError,
            zlib.error, lzma.LZMAError,  # corrupt compressed data inside a ZIP
        ) as error:
            reason = f"could not read the file ({error}). Re-export it and upload again."
            self._note(job, "error", reason)
            return
        self._stage(job, stored_sha, info)

    def _verdict(self, path: str, sha: str) -> tuple[str, str] | None:
        """(status, message) when the image duplicates or conflicts with a known one."""
        existing = self.by_path.get(path)
        if existing == sha:
            return "duplicate", "already in the study with the same content; skipped."
        if existing is not None:
            return "conflict", (
                f"a different image is already stored as {path!r}; nothing was replaced. "
                "Rename the new file if both images belong in the study."
            )
        if sha in self.by_sha:
            return "duplicate", (
                f"same image content as the existing stimulus {self.by_sha[sha]!r}; skipped. "
                "Rating files must use that stimulus's id."
            )
        if self._key(path) in self.by_key:
            other, _ = self.by_key[self._key(path)]
            return "conflict", (
                f"its stimulus id {self._key(path)!r} (study ids use the "
                f"{KEY_MODES[self.study.stimulus_key]}) is already used by {other!r} with "
                "different content; nothing was replaced. Rename one of the files, or set the "
                "study's stimulus id to 'relative path' on the Stimuli page if they sit in "
                "different folders."
            )
        return None

    def _stage(self, job: _Job, sha: str, info: ImageInfo) -> None:
        self.staged.append(_Staged(len(self.report.entries), job.path, sha, info))
        self._remember(job.path, sha)
        self._note(job, "added", f"{info.width}x{info.height} {info.media_type}")


class _Spool:
    """Copies a stream into a size-limited temporary file while hashing it."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            size += len(chunk)
            if size > limit:
                self.file.close()
                raise ValueError(
                    f"it expands beyond the {_human(limit)} per-file limit (ZIP bomb "
                    "protection or an oversized image); split or downscale it"
                )
            digest.update(chunk)
            self.file.write(chunk)
        self.file.seek(0)
        self.sha = digest.hexdigest()

    def __enter__(self) -> tuple[BinaryIO, str]:
        return self.file, self.sha  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _plan(
    name: str, source: Source, limits: ZipLimits, report: StimulusImportReport, stack: ExitStack
) -> list[_Job]:
    """Jobs for one uploaded item: itself, or the entries of a ZIP archive."""
    opener = _opener(source)
    if _is_zip(name, opener):
        return _plan_zip(name, opener, limits, report, stack)
    path, problem = _check_path(name)
    if problem is None and _is_hidden(path):
        report.entries.append(ReportEntry(name, path, "ignored", "hidden or system file; skipped."))
        return []
    if problem:
        report.entries.append(ReportEntry(name, "", "error", problem))
        return []
    return [_Job(name, path, opener)]


def _opener(source: Source) -> Callable[[], BinaryIO]:
    if isinstance(source, Path):
        return lambda: open(source, "rb")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return lambda: io.BytesIO(source)
    return lambda: _Unclosed(source)


class _Unclosed(io.BufferedIOBase):
    """A caller's stream rewound for us but left open when our ``with`` block ends."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        raw.seek(0)

    def read(self, size: int | None = -1) -> bytes:
        return self.raw.read(size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        """Leave the caller's stream open (Streamlit reuses UploadedFile objects)."""


def _is_zip(name: str, opener: Callable[[], BinaryIO]) -> bool:
    if name.lower().endswith(".zip"):
        return True
    with opener() as stream:
        return stream.read(4) == b"PK\x03\x04"


def _plan_zip(
    name: str, opener: Callable[[], BinaryIO], limits: ZipLimits,
    report: StimulusImportReport, stack: ExitStack,
) -> list[_Job]:
    def reject(message: str) -> list[_Job]:
        report.entries.append(ReportEntry(name, "", "error", message))
        return []

    try:
        archive = stack.enter_context(zipfile.ZipFile(stack.enter_context(opener())))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
        return reject(f"not a readable ZIP archive ({error}). Re-create the ZIP and upload again.")
    if len(infos) > limits.max_entries:
        return reject(
            f"the ZIP has {len(infos):,} entries, more than the {limits.max_entries:,} limit. "
            "Split it into smaller ZIPs."
        )
    jobs, accepted, hidden, reported = [], [], [], len(report.entries)
    for info in infos:
        if info.filename.endswith("/"):  # a folder (ZipInfo.is_dir fails on an empty name)
            continue
        entry_name = _entry_name(info)
        path, problem = _check_path(entry_name)
        if problem is None and _is_hidden(path):
            hidden.append(entry_name)
            continue
        problem = problem or _entry_problem(info, limits)
        if problem:
            report.entries.append(ReportEntry(f"{name}: {entry_name}", "", "error", problem))
            continue
        accepted.append(info)
        jobs.append(_Job(f"{name}: {entry_name}", path, lambda info=info: archive.open(info)))
    if hidden:
        examples = ", ".join(hidden[:3]) + (", ..." if len(hidden) > 3 else "")
        report.entries.append(ReportEntry(name, "", "ignored", (
            f"{len(hidden)} hidden or system entries skipped (__MACOSX/, dotfiles): {examples}"
        )))
    if not jobs and not hidden and len(report.entries) == reported:
        return reject(
            "the ZIP contains no files (only folders, or nothing). Add the images and upload again."
        )
    # One bomb entry rejects only itself (above); many inflating entries reject the archive.
    problem = _archive_problem(accepted, limits)
    return reject(problem + " Split it into smaller ZIPs of ordinary images.") if problem else jobs


def _archive_problem(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> str | None:
    total = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if total > limits.max_total_bytes:
        return (
            f"the ZIP expands to {_human(total)}, above the {_human(limits.max_total_bytes)} "
            "limit (ZIP bomb protection)."
        )
    if total > limits.ratio_floor_bytes and total > limits.max_ratio * max(packed, 1):
        return (
            f"the ZIP expands {total / max(packed, 1):.0f}-fold, above the "
            f"{limits.max_ratio:.0f}-fold limit (ZIP bomb protection)."
        )
    return None


def _entry_problem(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    if info.flag_bits & 0x1:
        return "the entry is password-protected. Re-create the ZIP without a password."
    if info.file_size > limits.max_entry_bytes:
        return (
            f"the entry expands to {_human(info.file_size)}, above the "
            f"{_human(limits.max_entry_bytes)} per-file limit (ZIP bomb protection)."
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        return (
            f"the entry expands {ratio:.0f}-fold, above the {limits.max_ratio:.0f}-fold limit "
            "(ZIP bomb protection). Images do not compress like that; check the archive."
        )
    return None


def _human(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _entry_name(info: zipfile.ZipInfo) -> str:
    """Entry name; legacy ZIPs without the UTF-8 flag are tried as UTF-8, then Korean cp949."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437", errors="replace")
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _check_path(name: str) -> tuple[str, str | None]:
    """(normalised stimulus path, problem or None). Rejects traversal and absolute paths."""
    text = str(name).replace("\\", "/")
    why = None
    if text.startswith("/"):
        why = "it is an absolute path"
    elif DRIVE_LETTER.match(text):
        why = "it starts with a drive letter"
    elif ".." in text.split("/"):
        why = "it contains '..' (path traversal)"
    if why:
        return "", (
            f"unsafe path {name!r}: {why}; not imported. Re-create the ZIP from inside the "
            "stimulus folder so entries have plain relative paths."
        )
    path = normalise_path(text)
    if not path:
        return "", "the file has no name. Give it a name and upload again."
    if len(path) > MAX_PATH_LENGTH:
        return "", f"the path is longer than {MAX_PATH_LENGTH} characters; shorten folder names."
    return path, None


def _is_hidden(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        any(part.startswith(".") or part == "__MACOSX" for part in parts)
        or parts[-1].lower() in IGNORED_NAMES
    )


# ---------------------------------------------------------------- metadata

ID_COLUMN_NAMES = (
    "stimulus", "stimulus_id", "stimulus id", "stim", "image", "image_id", "file", "filename",
    "file_name", "file name", "path", "id", "name", "자극", "파일", "파일명", "이미지",
)
INTENDED_COLUMN_NAMES = (
    "intended", "intended_emotion", "intended emotion", "target", "target_emotion", "posed",
    "posed_emotion", "emotion", "expression",
    "의도", "의도된 감정", "목표 감정", "감정", "표정",
)
# Column names db.analysis.load_stimuli already uses; attributes must not shadow them.
RESERVED_COLUMNS = {"stimulus", "stimulus_id", "sha256", "intended_emotion", "precropped"}


class MetadataError(ValueError):
    """A metadata file that cannot be applied at all; the message says what to do."""


@dataclass(frozen=True)
class RowIssue:
    row: int  # as the user sees it: header is row 1
    stimulus: str
    reason: str


@dataclass
class MetadataImportReport:
    file_name: str
    id_column: str
    intended_column: str | None
    attribute_columns: dict[str, str]  # file column -> attribute key
    n_rows: int = 0
    matched: int = 0
    values_changed: int = 0
    intended_set: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def summary(self) -> str:
        return (
            f"{self.file_name}: {self.matched} of {self.n_rows} rows matched a stimulus; "
            f"{self.values_changed} attribute values set; {self.intended_set} intended emotions "
            f"set; {len(self.issues)} rows with problems"
        )

    def to_csv(self) -> bytes:
        return csv_rows_bytes(
            ["row", "stimulus", "reason"], [(i.row, i.stimulus, i.reason) for i in self.issues]
        )


def import_metadata(
    session: Session,
    study_id: int,
    file_name: str,
    data: bytes,
    id_column: str | None = None,
    intended_column: str | None = None,
    code_map: dict[str, str] | None = None,
    *,
    actor: Role,
) -> MetadataImportReport:
    """Attach a CSV/TSV/XLSX metadata table to the study's stimuli.

    Non-empty cells overwrite attribute values; empty cells leave stored values untouched.
    Rows naming unknown stimuli or unknown emotion labels are reported, never guessed.
    """
    require(actor, Action.UPLOAD_STIMULI)
    table = read_table(file_name, data)
    study = get_study(session, study_id)
    index = key_index(session, study_id)
    if not index:
        raise MetadataError(f"{file_name}: the study has no stimuli yet. Import the images first.")

    def lookup(value: str) -> str:
        return lookup_key(value, study.stimulus_key, study.key_case_insensitive)

    id_col = _id_column(file_name, table, id_column, index, lookup)
    intended_col = _intended_column(file_name, table, intended_column, id_col)
    report = MetadataImportReport(
        file_name, id_col, intended_col, _attribute_columns(table, (id_col, intended_col))
    )
    report.n_rows = len(table)
    report.notes.extend(table.attrs.get("notes", []))
    rows = _matched_rows(table, id_col, index, lookup, report)
    report.matched = len(rows)
    values = {
        stimulus_id: {
            key: str(row[column]) for column, key in report.attribute_columns.items() if row[column]
        }
        for stimulus_id, (_, row) in rows.items()
    }
    report.values_changed = upsert_attributes(session, values, actor=actor)
    if intended_col:
        _apply_intended(session, rows, intended_col, code_map, report)
    return report


def parse_code_map(text: str) -> dict[str, str]:
    """Parse ``"1=anger, 2=disgust"`` (comma, semicolon or newline separated) into a code map."""
    codes = {}
    for item in re.split(r"[,;\n]", text):
        if not item.strip():
            continue
        code, sep, label = item.partition("=")
        if not sep or not code.strip() or not label.strip():
            raise ValueError(
                f"code map entry {item.strip()!r}: write it as CODE=LABEL, e.g. 1=anger"
            )
        codes[code.strip()] = label.strip()
    return codes


def _id_column(
    file_name: str, table: pd.DataFrame, given: str | None, index: dict[str, int],
    lookup: Callable[[str], str],
) -> str:
    """The given id column, or the column whose values match most stimulus ids."""
    if given:
        if given not in table.columns:
            raise MetadataError(
                f"{file_name}: no column named {given!r}. Columns: {', '.join(table.columns)}."
            )
        return given

    def score(column: str) -> tuple[int, int]:
        hits = sum(lookup(value) in index for value in table[column] if value)
        named = int(column.strip().casefold() in ID_COLUMN_NAMES)
        return hits, named

    best = max(table.columns, key=score)
    if score(best)[0] == 0:
        raise MetadataError(
            f"{file_name}: no column contains ids of this study's stimuli (for example "
            f"{next(iter(index))!r}). Check the study's stimulus id setting, or name the id "
            "column explicitly."
        )
    return best


def _intended_column(
    file_name: str, table: pd.DataFrame, given: str | None, id_col: str
) -> str | None:
    if given:
        if given not in table.columns:
            raise MetadataError(
                f"{file_name}: no column named {given!r}. Columns: {', '.join(table.columns)}."
            )
        return given
    by_name = {column.strip().casefold(): column for column in table.columns if column != id_col}
    for name in INTENDED_COLUMN_NAMES:
        if name in by_name:
            return by_name[name]
    return None


def _attribute_columns(table: pd.DataFrame, skip: tuple[str | None, ...]) -> dict[str, str]:
    columns = {}
    for column in table.columns:
        if column in skip or not (table[column] != "").any():
            continue
        key = f"{column} (metadata)" if column.casefold() in RESERVED_COLUMNS else column
        columns[column] = key[:200]
    return columns


def _matched_rows(
    table: pd.DataFrame, id_col: str, index: dict[str, int], lookup: Callable[[str], str],
    report: MetadataImportReport,
) -> dict[int, tuple[int, pd.Series]]:
    """Stimulus id -> (row number, row) for rows naming a known stimulus; reports the rest."""
    rows: dict[int, tuple[int, pd.Series]] = {}
    for position, row in table.iterrows():
        number, raw = int(position) + 2, row[id_col]
        stimulus_id = index.get(lookup(raw)) if raw else None
        if not raw:
            report.issues.append(RowIssue(number, "", f"empty stimulus id in column {id_col!r}"))
        elif stimulus_id is None:
            report.issues.append(RowIssue(number, raw, (
                "unknown stimulus: no stimulus of this study has this id. Check the spelling and "
                "the study's stimulus id setting, or import the image first."
            )))
        elif stimulus_id in rows:
            first = rows[stimulus_id][0]
            report.issues.append(RowIssue(number, raw, (
                f"the same stimulus is already described on row {first}; this row was not applied"
            )))
        else:
            rows[stimulus_id] = (number, row)
    return rows


def _apply_intended(
    session: Session, rows: dict[int, tuple[int, pd.Series]], column: str,
    code_map: dict[str, str] | None, report: MetadataImportReport,
) -> None:
    for stimulus_id, (number, row) in rows.items():
        raw = row[column]
        if not raw:
            continue
        label = to_canonical(raw, code_map)
        if label is None:
            report.issues.append(RowIssue(number, str(row[report.id_column]), (
                f"unknown emotion label {raw!r} in column {column!r}. Use one of the eight "
                "canonical emotions or a synonym, or declare a code map (e.g. 1=anger)."
            )))
            continue
        stimulus = session.get(Stimulus, stimulus_id)
        if stimulus.intended_emotion != label:
            stimulus.intended_emotion = label
            report.intended_set += 1

