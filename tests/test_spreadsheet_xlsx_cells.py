"""The streamed XLSX writer stores the cells pandas' ``to_excel`` stored (issue 10 replaced it for
speed): same values, same cell types, same number formats, text never a formula or error."""

from __future__ import annotations

import datetime
import io
import zipfile

import numpy as np
import openpyxl
import pandas as pd
import pytest

from core.io.spreadsheet import safe_frame, xlsx_bytes


def pandas_xlsx(sheets: dict[str, pd.DataFrame]) -> bytes:
    """The writer xlsx_bytes replaced: pandas' openpyxl engine, then every text cell forced to text."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            safe_frame(frame).to_excel(writer, sheet_name=name, index=False)
        for worksheet in writer.book.worksheets:
            for row in worksheet.iter_rows():
                for cell in row:
                    if isinstance(cell.value, str):
                        cell.data_type = "s"
    return buffer.getvalue()


def cells(data: bytes) -> dict[str, list[list[tuple]]]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    return {sheet.title: [[(cell.value, cell.data_type, cell.number_format) for cell in row]
                          for row in sheet.iter_rows()] for sheet in book.worksheets}


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "float": [0.1, np.nan, np.inf, -np.inf, 1 / 3],
        "finite": [1e-300, -0.0, 2.5, 1e300, 0.1 + 0.2],
        "int": np.arange(5, dtype=np.int64) - 2,
        "uint8": np.arange(5, dtype=np.uint8),
        "bool": [True, False, True, False, True],
        "text": ["=1+1", "#N/A", "#DIV/0!", "plain", None],
        "object": [1, 2.5, np.nan, "x", True],
        "numpy scalars": pd.Series([np.int32(3), np.float32(0.5), np.bool_(True), np.inf, None],
                                   dtype=object),
        "nullable": pd.array([1, None, 3, 4, 5], dtype="Int64"),
        "string": pd.array(["a", None, "-x", "@y", "b"], dtype="string"),
        "category": pd.Categorical(["x", "y", None, "x", "+z"]),
        "when": pd.to_datetime(["2024-01-02 03:04:05", None, "2025-06-07 00:00:00", "2024-02-29 12:00:00",
                               "2024-03-01 00:00:01"]),
        "day": [datetime.date(2024, 1, 2)] * 5,
        "took": pd.to_timedelta([1, 2, 3, None, 5], unit="h"),
        7: ["int label"] * 5,
    })


def plain_frame() -> pd.DataFrame:
    """What report tables hold: no dates, so core.io.xlsx writes them without openpyxl."""
    frame = mixed_frame().drop(columns=["when", "day", "took"])
    frame["edges"] = [" lead", "trail ", "  ", "a & b < c > d", "x" * 40_000]
    frame["big"] = [2**70, 10**16 + 1, -(2**63), 0, 12345678901234567]
    return frame


def test_cells_equal_those_pandas_wrote() -> None:
    sheets = {"mixed": mixed_frame(), "empty rows": mixed_frame().iloc[:0],
              "=risky": pd.DataFrame({"=head": ["-1", "-x"]}), "no columns": pd.DataFrame()}
    assert cells(xlsx_bytes(sheets)) == cells(pandas_xlsx(sheets))


@pytest.mark.filterwarnings("ignore:Cell contents too long")  # the reference writer says so
def test_plain_cells_equal_those_pandas_wrote() -> None:
    sheets = {"plain": plain_frame(), "empty rows": plain_frame().iloc[:0], "a'b & <c>": plain_frame().head(2),
              "=risky": pd.DataFrame({"=head": ["-1", "-x"]}), "no columns": pd.DataFrame()}
    data = xlsx_bytes(sheets)
    assert "docProps/app.xml" not in zipfile.ZipFile(io.BytesIO(data)).namelist()  # not openpyxl's
    assert cells(data) == cells(pandas_xlsx(sheets))
    assert pd.read_excel(io.BytesIO(data), sheet_name=None).keys() == sheets.keys()


def test_control_characters_are_refused_like_openpyxl_did() -> None:
    with pytest.raises(ValueError, match="cannot be used in a worksheet"):
        xlsx_bytes({"t": pd.DataFrame({"text": ["bell \x07"]})})


def test_text_that_openpyxl_would_read_as_a_formula_or_error_stays_text() -> None:
    frame = pd.DataFrame({"text": ["#N/A", "#REF!", "ok"]})
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"t": frame}))).active
    assert [(c.value, c.data_type) for c in sheet["A"]] == [
        ("text", "s"), ("#N/A", "s"), ("#REF!", "s"), ("ok", "s")]
