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

import pandas as pd

DELIMITERS = (",", ";", "\t")
SNIFF_LINES = 50
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls
HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


class TableError(ValueError):
    """A file that cannot be read as a table; the message names the file and what to do."""


def read_table(file_name: str, data: bytes) -> pd.DataFrame:
    """Read a CSV/TSV/XLSX upload into a DataFrame of stripped strings (empty cell -> ``""``).

    Blank rows are dropped; the index is kept, so ``index + 2`` is the row number in the file
    or spreadsheet (header on row 1). Column names are stripped and NFC-normalised.
    Raises :class:`TableError` for empty, binary or unreadable files.
    """
    if not data or not data.strip():
        raise TableError(f"{file_name}: the file is empty. Export the table again and re-upload.")
    if data.startswith(OLE_MAGIC):
        raise TableError(
            f"{file_name}: old Excel .xls format is not supported. "
            "Save it as .xlsx or CSV (UTF-8) and upload again."
        )
    if data.startswith(ZIP_MAGIC) or file_name.lower().endswith((".xlsx", ".xlsm")):
        frame = _read_xlsx(file_name, data)
    else:
        frame = _read_delimited(file_name, data)
    return _tidy(file_name, frame)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text table; returns (text, encoding name used).

    UTF-8 (with or without BOM) first; then cp949 only when it yields Korean text (cp949 also
    decodes many Western byte pairs into nonsense Hangul/Hanja); then cp1252, then latin-1,
    which accepts any byte.
    """
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
        counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
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


def _read_delimited(file_name: str, data: bytes) -> pd.DataFrame:
    if b"\x00" in data[:4096]:
        raise TableError(
            f"{file_name}: this looks like a binary file or UTF-16 text, not CSV. "
            "Save it from Excel as 'CSV UTF-8' and upload again."
        )
    text, _ = decode_text(data)
    delimiter = sniff_delimiter(text, file_name)
    try:
        return pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
            na_filter=False, skip_blank_lines=False, engine="python",
        )
    except (pd.errors.ParserError, csv.Error) as error:
        raise TableError(
            f"{file_name}: cannot split the file into columns ({error}). Check that every row "
            "has the same number of delimiters and that quotes are closed."
        ) from error


def _read_xlsx(file_name: str, data: bytes) -> pd.DataFrame:
    try:
        return pd.read_excel(
            io.BytesIO(data), sheet_name=0, dtype=str, keep_default_na=False,
            na_filter=False, engine="openpyxl",
        )
    except Exception as error:  # openpyxl raises many types for broken workbooks
        raise TableError(
            f"{file_name}: cannot read it as an Excel workbook ({type(error).__name__}: {error}). "
            "Open it in Excel, save as .xlsx or CSV, and upload again."
        ) from error


def _tidy(file_name: str, frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [unicodedata.normalize("NFC", str(col)).strip() for col in frame.columns]
    frame = frame.fillna("").astype(str).apply(lambda col: col.str.strip())
    # Drop blank rows but keep the index, so ``index + 2`` stays the row number users see.
    frame = frame.loc[~(frame == "").all(axis=1)]
    if frame.columns.size == 0 or frame.empty:
        raise TableError(f"{file_name}: no data rows below the header. Check the file content.")
    return frame
