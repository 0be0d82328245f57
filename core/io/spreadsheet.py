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
import datetime
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from core.io import xlsx

RISKY_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
# Text openpyxl would store as an error value (its cell.ERROR_CODES).
OPENPYXL_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})
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
    """One workbook, one sheet per frame (names must already be Excel-legal and unique).

    Cells hold what ``DataFrame.to_excel`` wrote before (missing values as empty text,
    infinities as ``inf``/``-inf`` text), through :mod:`core.io.xlsx`, which is much faster than
    pandas' and openpyxl's writers (issue 10); sheets with dates or durations go through
    openpyxl, for their number formats.
    """
    rows = {name: _excel_rows(safe_frame(frame)) for name, frame in sheets.items()}
    if all(xlsx.is_plain(value) for sheet in rows.values() for row in sheet for value in row):
        return xlsx.workbook_bytes(rows)
    return _openpyxl_workbook(rows)


def _excel_rows(frame: pd.DataFrame) -> list[Sequence[object]]:
    """The header and rows of ``frame`` as pandas' Excel writer converts them."""
    if not frame.shape[1]:
        return []
    columns = [_excel_column(frame.iloc[:, position]) for position in range(frame.shape[1])]
    return [[_excel_value(label) for label in frame.columns], *zip(*columns)]


def _excel_column(series: pd.Series) -> list:
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "O"
    if kind in "iub":
        return series.tolist()
    if kind == "f" and np.isfinite(series.to_numpy()).all():
        return series.tolist()
    return [_excel_value(value) for value in series]


def _openpyxl_workbook(rows: Mapping[str, list[Sequence[object]]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, sheet_rows in rows.items():
        sheet = book.create_sheet(name)
        for row in sheet_rows:
            sheet.append([_cell(sheet, value) for value in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _excel_value(value: object) -> object:
    """One value as pandas' ``ExcelFormatter`` and ``ExcelWriter`` write it."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    if pd.api.types.is_float(value) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if pd.api.types.is_integer(value):
        return int(value)
    if pd.api.types.is_float(value):
        return float(value)
    if pd.api.types.is_bool(value):
        return bool(value)
    if isinstance(value, (Decimal, datetime.date, datetime.timedelta)):
        return value
    return str(value)


def _cell(sheet, value: object) -> object:
    """``value``, or a cell for what a write-only sheet would store wrongly: openpyxl turns text
    starting with ``=`` into a formula and ``#N/A``-like text into an error; text must stay text.
    Dates and durations get pandas' number formats."""
    from openpyxl.cell import WriteOnlyCell

    if isinstance(value, str):
        if not (value.startswith("=") or value in OPENPYXL_ERROR_CODES):
            return value
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"
        return cell
    if isinstance(value, datetime.timedelta):
        cell = WriteOnlyCell(sheet, value.total_seconds() / 86400)
        cell.number_format = "0"
        return cell
    if isinstance(value, datetime.date):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = "YYYY-MM-DD HH:MM:SS" if isinstance(value, datetime.datetime) else "YYYY-MM-DD"
        return cell
    return value
