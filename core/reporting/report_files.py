"""The report folder: every table as CSV and one XLSX, the paper tables as LaTeX, the figures as
SVG and PNG, the methods text with its bibliography, the self-contained HTML file and the manifest (parameters, batches, models and
library versions, so a number in a paper can be traced and rerun). Pure: tables in, files out.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from core.agreement.report import TABLES

XLSX_MAX_ROWS = 10_000  # longer tables go to CSV only
LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "pingouin", "krippendorff")

# LaTeX table name -> (source table, row filter, columns, caption).
LATEX_TABLES: dict[str, tuple[str, dict[str, object], list[str], str]] = {
    "human_reliability": ("alpha", {}, ["dimension", "level", "estimate", "ci_low", "ci_high", "n", "n_raters"],
                          "Human-human reliability: Krippendorff's alpha"),
    "fleiss": ("fleiss", {}, ["metric", "category", "estimate", "ci_low", "ci_high", "n", "n_excluded"],
               "Fleiss' kappa and per-category kappas of the human labels"),
    "icc": ("icc", {}, ["dimension", "label", "estimate", "ci_low", "ci_high", "F", "df1", "df2", "p", "n", "k"],
            "Intraclass correlations of human valence and arousal (both naming conventions)"),
    "ceiling": ("ceiling", {}, ["dimension", "metric", "estimate", "ci_low", "ci_high", "human_min", "human_max", "n"],
                "Human ceiling: median leave-one-rater-out score"),
    "model_continuous": ("model_continuous", {"metric": ["ccc", "pearson_r", "rmse", "mae"]},
                         ["model_name", "pipeline", "dimension", "metric", "estimate", "ci_low", "ci_high", "n"],
                         "Model vs human mean valence and arousal"),
    "model_labels": ("model_labels", {"metric": ["accuracy", "macro_f1", "cohen_kappa"]},
                     ["model_name", "pipeline", "reference", "scope", "metric", "estimate", "ci_low",
                      "ci_high", "n", "n_excluded"],
                     "Model vs human labels (scope 'outputtable': only stimuli whose reference "
                     "label the model can output)"),
    "model_as_rater": ("model_as_rater", {}, ["model_name", "dimension", "metric", "estimate", "ci_low",
                                              "ci_high", "percentile", "human_median", "n"],
                       "Each model as one more rater: leave-one-out score and percentile among humans"),
    "panel_reliability": ("panel_reliability", {}, ["model_name", "dimension", "metric", "panel", "estimate",
                                                    "ci_low", "ci_high", "n"],
                          "Human panel reliability with and without each model"),
}



def write_report(
    tables: dict[str, pd.DataFrame], out: Path, *, figures: bool = True,
    predictions: pd.DataFrame | None = None, latex_full: bool = False,
) -> list[Path]:
    """Write the tables (CSV, one XLSX), LaTeX tables (compact unless ``latex_full``) and figures
    of ``tables`` under ``out``. The figures render in a child process while the tables are
    written."""
    out = Path(out)
    if not figures:
        return _write_tables(tables, out, latex_full)
    with _figure_writer() as writer:
        figure_files = _queue_figures(writer, tables, out / "figures", predictions)
        written = _write_tables(tables, out, latex_full)
    return written + figure_files


def _write_tables(tables: dict[str, pd.DataFrame], out: Path, latex_full: bool) -> list[Path]:
    from core.reporting import exports

    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "latex").mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        path = out / "tables" / f"{name}.csv"
        path.write_bytes(exports.to_csv_bytes(table))
        written.append(path)
    xlsx = out / "tables.xlsx"
    xlsx.write_bytes(exports.to_xlsx_bytes(_xlsx_sheets(tables)))
    written.append(xlsx)
    for name, (source, filters, columns, caption) in LATEX_TABLES.items():
        table = _latex_rows(tables.get(source, pd.DataFrame()), filters, columns)
        if table.empty:
            continue
        table = table if latex_full else exports.compact_table(table)
        path = out / "latex" / f"{name}.tex"
        path.write_text(exports.to_latex(table, caption, f"tab:{name.replace('_', '-')}"), encoding="utf-8")
        written.append(path)
    return written


def write_methods(tables: dict[str, pd.DataFrame], out: Path, models: pd.DataFrame | None, *,
                  n_boot: int, seed: int) -> list[Path]:
    """``methods.md``, ``methods.tex`` and the ``references.bib`` they cite
    (``core.reporting.methods``)."""
    from core.reporting.methods import methods_text

    text = methods_text(tables, models, n_boot=n_boot, seed=seed)
    files = {"methods.md": text.markdown, "methods.tex": text.latex, "references.bib": text.bibtex}
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8")
    return [out / name for name in files]


def _xlsx_sheets(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables for the workbook; longer ones (per-stimulus tables of big studies: openpyxl
    took a minute for FER+'s 35,708 rows) are left to their CSV, as the ``csv_only`` sheet says."""
    sheets = {k: v for k, v in tables.items() if len(v.columns) and len(v) <= XLSX_MAX_ROWS}
    left_out = [k for k, v in tables.items() if len(v) > XLSX_MAX_ROWS]
    if left_out:
        sheets["csv_only"] = pd.DataFrame({
            "table": left_out, "rows": [len(tables[k]) for k in left_out],
            "note": [f"over {XLSX_MAX_ROWS:,} rows: see tables/{k}.csv" for k in left_out]})
    return sheets


def _latex_rows(table: pd.DataFrame, filters: dict[str, object], columns: list[str]) -> pd.DataFrame:
    if table.empty:
        return table
    for column, allowed in filters.items():
        table = table[table[column].isin(allowed)]
    return table[[c for c in columns if c in table.columns]].reset_index(drop=True)


def write_figures(
    tables: dict[str, pd.DataFrame], folder: Path, predictions: pd.DataFrame | None = None
) -> list[Path]:
    """Every report figure (``core.reporting.html_report.report_figures``) as SVG and PNG."""
    with _figure_writer() as writer:
        return _queue_figures(writer, tables, folder, predictions)


def _figure_writer():
    from core.reporting.exports import _vegalite_version
    from core.reporting.figure_files import FigureWriter

    return FigureWriter(_vegalite_version())


def _queue_figures(writer, tables: dict[str, pd.DataFrame], folder: Path,
                   predictions: pd.DataFrame | None) -> list[Path]:
    from core.reporting.exports import chart_spec
    from core.reporting.html_report import iter_report_figures

    return [path for figure in iter_report_figures(tables, predictions)
            for path in writer.write(chart_spec(figure.chart), folder / figure.name)]


def write_html(tables: dict[str, pd.DataFrame], path: Path, *, predictions: pd.DataFrame | None,
               title: str, manifest: dict) -> Path:
    """The self-contained HTML report (``core.reporting.html_report``)."""
    from core.reporting.html_report import render_html, report_figures

    page = render_html(tables, report_figures(tables, predictions), title=title, manifest=manifest,
                       descriptions=TABLES)
    path.write_text(page, encoding="utf-8")
    return path


def manifest(parameters: dict[str, Any], ratings: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """What a report was computed from: ``parameters`` plus its batches, models and versions."""
    return {
        **parameters,
        "batches": sorted(int(b) for b in ratings["batch_id"].unique()),
        "models": sorted(predictions["model_id"].unique().tolist()),
        "n_ratings": len(ratings), "n_predictions": len(predictions),
        "tables": TABLES, "versions": {name: version(name) for name in LIBRARIES},
    }
