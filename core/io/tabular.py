"""One reader for every tabular upload (metadata and rating files): CSV, TSV and XLSX.

Files come from many Excel installations: UTF-8 with or without BOM, Korean Windows (cp949),
Western Windows (cp1252/latin-1), ``;`` as delimiter where the comma is the decimal separator.
Every cell is returned as a string; numbers are parsed later by :func:`parse_number` so that
``"4,5"`` and ``"4.5"`` mean the same and a bad cell is reported with its row.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
import zipfile

import pandas as pd

DELIMITERS = (",", ";", "\t")
SNIFF_LINES = 50
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls
HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode text" export
# Byte-order marks and zero-width characters left in cells by concatenated or copied files.
INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"
MAX_COLUMNS = 16_384  # Excel's limit; a wider table is a wrong delimiter or a broken export
# Uncompressed size of all parts of an XLSX (a ZIP); a million-cell sheet is about 30 MB.
MAX_WORKBOOK_BYTES = 256 << 20
# Cells per file (header and blank rows included), counted while reading so that a huge file
# stops early: 400,000 rows of a 5-column long rating file (2,000 stimuli x 200 raters). A
# 100,000-row file imports in about 100 MB above the process's baseline.
MAX_CELLS = 2_000_000


class TableError(ValueError):
    """A file that cannot be read as a table; the message names the file and what to do."""


def read_table(file_name: str, data: bytes, max_cells: int | None = None) -> pd.DataFrame:
    """Read a CSV/TSV/XLSX upload into a DataFrame of stripped strings (empty cell -> ``""``).

    The first non-blank row holds the column names. Blank rows are dropped; the index is kept,
    so ``index + 2`` is the row number in the file or spreadsheet (header on row 1). Column
    names are stripped and NFC-normalised. XLSX: the first sheet is read (the others are named
    in ``frame.attrs["notes"]``); formulas are read as the values Excel last computed.
    Raises :class:`TableError` for empty, binary or unreadable files, duplicate or missing
    column names, rows with more values than the header has columns, and files of more than
    ``max_cells`` cells (default :data:`MAX_CELLS`; reading stops there).
    """
    max_cells = max_cells or MAX_CELLS
    if not data or not data.strip():
        raise TableError(f"{file_name}: the file is empty. Export the table again and re-upload.")
    if data.startswith(OLE_MAGIC):
        raise TableError(
            f"{file_name}: old Excel .xls format is not supported. "
            "Save it as .xlsx or CSV (UTF-8) and upload again."
        )
    notes: list[str] = []
    if data.startswith(ZIP_MAGIC) or file_name.lower().endswith((".xlsx", ".xlsm")):
        rows = _read_xlsx(file_name, data, notes, max_cells)
    else:
        rows = _read_delimited(file_name, data, max_cells)
    frame = _tidy(file_name, rows)
    frame.attrs["notes"] = notes
    return frame


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text table; returns (text, encoding name used).

    UTF-16 when the data starts with its byte-order mark; else UTF-8 (with or without BOM)
    first; then cp949 only when it yields Korean text (cp949 also decodes many Western byte
    pairs into nonsense Hangul/Hanja); then cp1252, then latin-1, which accepts any byte.
    """
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16"), "utf-16"
    try:
        text = data.decode("utf-8-sig")
        return text, "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp949")
        if _looks_korean(text):
            return text, "cp949"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def sniff_delimiter(text: str, file_name: str = "") -> str:
    """The delimiter among ``, ; TAB`` that splits the first lines into the most stable columns."""
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    if file_name.lower().endswith(".tsv"):
        return "\t"
    best, best_score = ",", (-1.0, 0)
    for delimiter in DELIMITERS:
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        except csv.Error:  # e.g. a field above csv's size limit: not this delimiter
            continue
        if not counts or counts[0] < 2:
            continue
        consistent = sum(count == counts[0] for count in counts) / len(counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def parse_number(text: object) -> float | None:
    """Parse ``"4.5"``, ``"4,5"`` (decimal comma), ``"1.234,5"`` or ``"-3"``; None if blank or bad.

    Non-finite values (nan, inf) are treated as not a number.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
        return value if math.isfinite(value) else None
    token = unicodedata.normalize("NFKC", str(text)).strip().replace("\u2212", "-")
    token = token.replace(" ", "").replace("\u00a0", "")
    if not token:
        return None
    if "," in token and "." in token:
        # The separator that comes last is the decimal one; the other groups thousands.
        thousands = "." if token.rfind(",") > token.rfind(".") else ","
        token = token.replace(thousands, "").replace(",", ".")
    elif token.count(",") == 1:
        token = token.replace(",", ".")
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _looks_korean(text: str) -> bool:
    non_ascii = [ch for ch in text if ord(ch) > 127]
    if not non_ascii:
        return True
    hangul = sum(bool(HANGUL.match(ch)) for ch in non_ascii)
    return hangul / len(non_ascii) >= 0.8


def _read_delimited(file_name: str, data: bytes, max_cells: int) -> list[list[str]]:
    utf16 = data.startswith(UTF16_BOMS)
    if not utf16 and b"\x00" in data[:4096]:
        raise TableError(
            f"{file_name}: this looks like a binary file or UTF-16 text without a byte-order "
            "mark, not CSV. Save it from Excel as 'CSV UTF-8' and upload again."
        )
    try:
        text, _ = decode_text(data)
    except UnicodeDecodeError as error:  # only UTF-16 decoding can fail
        raise TableError(
            f"{file_name}: the UTF-16 text is damaged ({error}). Save it from Excel as "
            "'CSV UTF-8' and upload again."
        ) from error
    delimiter = sniff_delimiter(text, file_name)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    cells = 0
    try:
        for row in reader:
            cells += len(row)
            if cells > max_cells:
                lines = text.count("\n") + (not text.endswith("\n"))
                found = f"about {lines:,} lines of {len(rows[0]) if rows else len(row)} columns"
                raise _too_big(file_name, max_cells, found)
            rows.append(row)
        return rows
    except csv.Error as error:
        raise TableError(
            f"{file_name}: cannot split the file into columns near line {reader.line_num} "
            f"({error}). Check that quotes are closed and that the delimiter is right."
        ) from error


def _read_xlsx(file_name: str, data: bytes, notes: list[str], max_cells: int) -> list[list[str]]:
    _check_workbook_size(file_name, data)
    options = {"sheet_name": 0, "header": None, "dtype": str, "keep_default_na": False,
               "na_filter": False}
    try:
        with pd.ExcelFile(io.BytesIO(data), engine="openpyxl") as book:
            sheets = book.sheet_names
            width = max(1, pd.read_excel(book, nrows=SNIFF_LINES, **options).shape[1])
            row_limit = max_cells // width
            frame = pd.read_excel(book, nrows=row_limit + 1, **options)
    except Exception as error:  # openpyxl raises many types for broken workbooks
        raise TableError(
            f"{file_name}: cannot read it as an Excel workbook ({type(error).__name__}: {error}). "
            "Open it in Excel, save as .xlsx or CSV, and upload again."
        ) from error
    if len(frame) > row_limit or frame.size > max_cells:
        raise _too_big(file_name, max_cells, f"more than {row_limit:,} rows of {width} columns")
    cells = frame.fillna("").astype(str)
    others = ", ".join(repr(name) for name in sheets[1:])
    if others and not (cells != "").to_numpy().any():
        raise TableError(
            f"{file_name}: the first sheet {sheets[0]!r} is empty and only the first sheet is "
            f"read (other sheets: {others}). Move the table to the first sheet and upload again."
        )
    if others:
        notes.append(
            f"{file_name}: read the first sheet {sheets[0]!r}; other sheets ({others}) were "
            "ignored. Move a table to the first sheet (or save it as CSV) to import it."
        )
    return cells.to_numpy().tolist()


def _too_big(file_name: str, max_cells: int, found: str) -> TableError:
    return TableError(
        f"{file_name}: more than {max_cells:,} cells ({found}), above the limit for one file. "
        "Split it into smaller files (e.g. by rater or by stimulus set, each with the header "
        "row) and upload them one after the other; each becomes its own batch."
    )


def _check_workbook_size(file_name: str, data: bytes) -> None:
    """Refuse ZIP bombs from the sizes in the archive directory (zipfile never inflates an
    entry beyond its declared size)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            total = sum(info.file_size for info in book.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return  # not a readable ZIP: the workbook reader says so
    if total > MAX_WORKBOOK_BYTES:
        raise TableError(
            f"{file_name}: the workbook expands to {total / 2**20:,.0f} MB, above the "
            f"{MAX_WORKBOOK_BYTES >> 20} MB limit (protection against ZIP bombs). Save the sheet "
            "as CSV, or split it, and upload again."
        )


def _strip(cell: str) -> str:
    return cell.strip().strip(INVISIBLE).strip()


def _clean(cells: pd.Series) -> pd.Series:
    """Vectorised :func:`_strip`."""
    return cells.str.strip().str.strip(INVISIBLE).str.strip()


def _tidy(file_name: str, rows: list[list[str]]) -> pd.DataFrame:
    """Header from the first non-blank row; refuses unnamed data columns and repeated names."""
    width = max(map(len, rows), default=0)
    if width > MAX_COLUMNS:
        raise TableError(
            f"{file_name}: more than {MAX_COLUMNS:,} columns (Excel's limit). Check that the "
            "file uses ',', ';' or tab between values, one row per line."
        )
    start = next((i for i, row in enumerate(rows) if any(map(_strip, row))), None)
    if start is None:
        raise TableError(f"{file_name}: the file is empty. Export the table again and re-upload.")
    header = [unicodedata.normalize("NFC", _strip(str(name))) for name in rows[start]]
    header += [""] * (width - len(header))
    body = rows[start + 1:]
    if any(len(row) != width for row in body):
        body = [row + [""] * (width - len(row)) for row in body]
    frame = pd.DataFrame(body, columns=range(width), dtype=object).astype(str).apply(_clean)
    frame.index = frame.index + start  # index + 2 is the row number users see
    frame = frame.loc[~(frame == "").all(axis=1)]
    _check_header(file_name, header, frame, start + 1)
    named = [j for j, name in enumerate(header) if name]
    frame = frame[named]
    frame.columns = [header[j] for j in named]
    if frame.columns.size == 0 or frame.empty:
        raise TableError(f"{file_name}: no data rows below the header. Check the file content.")
    return frame


def _check_header(file_name: str, header: list[str], frame: pd.DataFrame, header_row: int) -> None:
    for position, name in enumerate(header):
        filled = frame.index[frame[position] != ""] if not name else []
        if len(filled):
            raise TableError(
                f"{file_name}: column {position + 1} (Excel column {_letters(position)}) has "
                f"values, first on row {int(filled[0]) + 2}, but no name in the header row "
                f"(row {header_row}). Put one name per column in the header row: remove title "
                "rows above it and unmerge header cells; in a CSV, check the delimiters and "
                "quotes on that row."
            )
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if name and name in seen:
            raise TableError(
                f"{file_name}: the header names {name!r} twice (columns {seen[name] + 1} and "
                f"{position + 1}). Give every column its own name and upload again."
            )
        seen.setdefault(name, position)


def _letters(position: int) -> str:
    """Spreadsheet column letters: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
