"""Spreadsheet-safe CSV and XLSX writing: text that a spreadsheet would run stays text.

Stimulus names, rater ids, labels and model names come from users' files. A cell such as
``=HYPERLINK("http://evil.example", "click")`` in a CSV or XLSX export would run as a formula
when a coauthor opens the file (CSV/formula injection). Following OWASP's advice, every text
cell and header that starts with ``= + - @``, a tab or a carriage return gets a leading single
quote, and XLSX text cells are written as strings, never as formulas.

Numbers stay numbers: only ``str`` values are touched. A text cell that is exactly a decimal
number (``-0.5``, ``+3``, ``-1e-3``) is left alone too: a spreadsheet reads it as that number,
never as a formula, and a rejected-rows file must keep its values intact for re-upload.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

RISKY_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_DECIMAL_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` with a leading quote when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(RISKY_STARTS) and not _DECIMAL_NUMBER.fullmatch(value):
        return QUOTE + value
    return value


def _holds_text(series: pd.Series) -> bool:
    return not (
        pd.api.types.is_numeric_dtype(series)
        or pd.api.types.is_bool_dtype(series)
        or pd.api.types.is_datetime64_any_dtype(series)
        or pd.api.types.is_timedelta64_dtype(series)
    )


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column headers are safe to open in a spreadsheet."""
    out = frame.rename(columns=safe_cell)
    for position in range(out.shape[1]):
        column = out.iloc[:, position]
        if _holds_text(column):
            out.isetitem(position, column.astype(object).map(safe_cell))
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV with a byte-order mark (Excel then shows Korean and other non-ASCII text).

    Rows end in CRLF (RFC 4180), which also makes the csv module quote a field holding a bare
    CR: unquoted, a spreadsheet would start a new row there, outside the field's quote prefix.
    """
    return safe_frame(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")


def csv_rows_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """Like :func:`csv_bytes` for a header and plain rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(name) for name in header])
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig")


def xlsx_bytes(sheets: Mapping[str, pd.DataFrame]) -> bytes:
    """One workbook, one sheet per frame (names must already be Excel-legal and unique)."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for sheet, frame in sheets.items():
            safe_frame(frame).to_excel(writer, sheet_name=sheet, index=False)
        for worksheet in writer.book.worksheets:
            _store_text_as_strings(worksheet)
    return buffer.getvalue()


def _store_text_as_strings(worksheet) -> None:
    """openpyxl turns any text starting with ``=`` into a formula; text must stay text."""
    for row in worksheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str):
                cell.data_type = "s"
