"""Exports of tables and charts: CSV, XLSX, paper-ready LaTeX, SVG and PNG.

Tables are the tidy frames of :mod:`core.agreement.report` (one row per estimate with ``estimate``,
``ci_low``, ``ci_high``, ``n``). The LaTeX export merges an estimate and its CI into one cell,
``0.62 [0.55, 0.68]``, so a table can go into a paper unchanged (needs ``\\usepackage{booktabs}``).
Charts are rendered offline by vl-convert (no browser, no network).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import pandas as pd

from core.io import spreadsheet

if TYPE_CHECKING:
    import altair as alt

ESTIMATE_COLUMNS = ("estimate", "ci_low", "ci_high")
MISSING = "--"
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIALS))
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
SHEET_NAME_MAX = 31  # Excel's limit


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV with a byte-order mark; text a spreadsheet would run is quoted (core.io.spreadsheet)."""
    return spreadsheet.csv_bytes(df)


def _sheet_names(names: list[str]) -> list[str]:
    """Excel-legal, unique sheet names (at most 31 characters, no []:*?/\\)."""
    result: list[str] = []
    for name in names:
        base = _SHEET_FORBIDDEN.sub("_", str(name)).strip("'")[:SHEET_NAME_MAX] or "sheet"
        candidate, suffix = base, 2
        while candidate.lower() in {r.lower() for r in result}:
            tail = f" ({suffix})"
            candidate, suffix = base[: SHEET_NAME_MAX - len(tail)] + tail, suffix + 1
        result.append(candidate)
    return result


def to_xlsx_bytes(tables: Mapping[str, pd.DataFrame]) -> bytes:
    """One workbook with one sheet per table, named after its key (shortened to Excel's limit)."""
    if not tables:
        raise ValueError("no tables to export: pass at least one named table")
    return spreadsheet.xlsx_bytes(dict(zip(_sheet_names(list(tables)), tables.values())))


def latex_escape(text: object) -> str:
    """Escape LaTeX's special characters in a cell or header."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIALS[m.group()], str(text))


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_number(value: object, digits: int = 2) -> str:
    """A number rounded to ``digits`` (integers stay integers); missing values become ``--``."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def format_estimate(estimate: object, low: object, high: object, digits: int = 2) -> str:
    """``0.62 [0.55, 0.68]``; the estimate alone when it has no CI."""
    text = format_number(estimate, digits)
    if _is_missing(low) or _is_missing(high):
        return text
    return f"{text} [{format_number(low, digits)}, {format_number(high, digits)}]"


def with_estimate_text(table: pd.DataFrame, digits: int = 2, column: str = "estimate") -> pd.DataFrame:
    """The table with ``estimate``/``ci_low``/``ci_high`` merged into one text column.

    The merged column takes the place of ``estimate`` and is titled ``estimate [95% CI]``.
    """
    if not set(ESTIMATE_COLUMNS) <= set(table.columns):
        return table.copy()
    merged = [
        format_estimate(e, lo, hi, digits)
        for e, lo, hi in zip(table["estimate"], table["ci_low"], table["ci_high"])
    ]
    out = table.drop(columns=["ci_low", "ci_high"]).copy()
    out["estimate"] = merged
    return out.rename(columns={"estimate": f"{column} [95% CI]"})


def _column_alignment(series: pd.Series) -> str:
    return "r" if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) else "l"


# Columns that say which estimate a row is, in the order a paper table reads them.
MODEL_COLUMNS = ("model_name", "model_id")
ROW_NAME_COLUMNS = ("rater", "dimension", "metric", "reference", "scope", "category", "label", "level",
                    "group", "panel")


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's default: what names the row (only the naming columns that vary, plus the
    model), the estimate with its CI, and n; the full table stays one option away."""
    if "estimate" not in table.columns:
        return table
    model = [c for c in MODEL_COLUMNS if c in table.columns][:1]
    varying = [c for c in ROW_NAME_COLUMNS if c in table.columns and table[c].nunique(dropna=False) > 1]
    names = model + varying
    estimate = [c for c in ESTIMATE_COLUMNS if c in table.columns]
    return table[names + estimate + (["n"] if "n" in table.columns else [])]


def to_latex(table: pd.DataFrame, caption: str, label: str, *, digits: int = 2) -> str:
    """A booktabs ``table`` environment; estimates with their CI in one cell.

    Every header and cell is escaped (underscores in model ids such as ``enet_b0_8_va_mtl``).
    """
    shown = with_estimate_text(table, digits)
    alignment = "".join(
        "l" if col.endswith("[95% CI]") else _column_alignment(shown[col]) for col in shown.columns
    )
    header = " & ".join(latex_escape(col) for col in shown.columns) + r" \\"
    rows = [
        " & ".join(latex_escape(format_number(value, digits)) for value in row) + r" \\"
        for row in shown.itertuples(index=False, name=None)
    ]
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{alignment}}}",
        r"\toprule",
        header,
        r"\midrule",
        *rows,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _vegalite_version() -> str:
    """The Vega-Lite version of Altair's schema (e.g. ``v6.4``), so rendering matches the app."""
    import altair as alt  # charts only: table exports skip altair's import

    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    return f"v{major}.{minor}"


ChartLike = Union["alt.TopLevelMixin", dict]
"""An Altair chart or its Vega-Lite spec (``chart.to_dict()``, e.g. cached by the UI)."""


def chart_spec(chart: ChartLike) -> dict:
    """The Vega-Lite spec without Altair's JSON-schema validation, which costs more than building
    the chart; tests/test_charts.py validates every report figure instead."""
    return chart if isinstance(chart, dict) else chart.to_dict(validate=False)


def chart_to_svg(chart: ChartLike) -> str:
    """The chart as an SVG document."""
    import vl_convert

    return vl_convert.vegalite_to_svg(chart_spec(chart), vl_version=_vegalite_version())


def svg_to_png(svg: str, scale: float = 2) -> bytes:
    """Rasterise an SVG from :func:`chart_to_svg` (what ``vegalite_to_png`` does after compiling)."""
    import vl_convert

    return vl_convert.svg_to_png(svg, scale=scale)


def chart_to_png(chart: ChartLike, scale: float = 2) -> bytes:
    """The chart as PNG bytes; ``scale=2`` gives print resolution for a single-column figure."""
    return svg_to_png(chart_to_svg(chart), scale=scale)


def save_chart(chart: ChartLike, stem: Path) -> list[Path]:
    """Write ``<stem>.svg`` and ``<stem>.png``; returns both paths."""
    from core.reporting.figure_files import write_figure

    return write_figure(chart_spec(chart), Path(stem), _vegalite_version())
