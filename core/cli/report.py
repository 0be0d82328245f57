"""``report`` command: every agreement table as CSV, the paper tables as LaTeX, and the figures.

    python -m core report --study NAME --out DIR [--boot 1000] [--seed 0]
        [--models ID ...] [--batches ID ...] [--ties none|intended] [--unequal modal|all]
        [--subgroups ATTR ...] [--no-figures] [--html]

Writes DIR/tables/<table>.csv (one per ``core.agreement.report.TABLES`` entry), DIR/tables.xlsx,
DIR/latex/<table>.tex, DIR/figures/<figure>.svg|.png and DIR/manifest.json (the parameters and
library versions, so a number in a paper can be traced and reproduced); with --html also
DIR/report.html, one self-contained file with every table and figure that opens offline.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from core.agreement import TIE_POLICIES
from core.agreement.reliability import UNEQUAL_RATER_POLICIES
from core.agreement.report import TABLES, build_report
from core.cli import summary
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.engine import make_engine, make_sessionmaker
from db.models import Study

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


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help=summary("report"),
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("--study", required=True, help="study name")
    report.add_argument("--out", required=True, type=Path, help="output folder (created)")
    report.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000; 0 = no bootstrap CIs)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    report.add_argument("--models", nargs="+", help="model ids to include (default: all with predictions)")
    report.add_argument("--batches", nargs="+", type=int, help="rating batch ids (default: all active)")
    report.add_argument("--ties", choices=TIE_POLICIES, default="none",
                        help="majority-label ties: none (no majority) or intended (resolve to the intended emotion when tied)")
    report.add_argument("--unequal", choices=UNEQUAL_RATER_POLICIES, default="modal",
                        help="Fleiss' kappa with unequal rater counts: modal (stimuli with the modal count) or all")
    report.add_argument("--subgroups", nargs="*", help="stimulus attributes to split by (default: all with 2-12 values)")
    report.add_argument("--no-figures", action="store_true", help="skip SVG/PNG figures")
    report.add_argument("--latex-full", action="store_true",
                        help="LaTeX tables with every column (default: model, estimate [CI], n)")
    report.add_argument("--html", action="store_true",
                        help="also write DIR/report.html: every table and figure in one offline HTML file")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    if args.boot < 0:
        print(f"error: --boot must be >= 0, got {args.boot}", file=sys.stderr)
        return 2
    factory = make_sessionmaker(make_engine(args.db))
    with factory() as session:
        study = session.scalar(select(Study).where(Study.name == args.study))
        if study is None:
            names = session.scalars(select(Study.name).order_by(Study.name)).all()
            print(f"error: no study named {args.study!r}; studies: {', '.join(names) or '(none)'}",
                  file=sys.stderr)
            return 2
        ratings = load_ratings(session, study.id, args.batches)
        stimuli = load_stimuli(session, study.id)
        predictions = load_predictions(session, study.id, args.models)
        models = _describe_models(session)
    if ratings.empty:
        print(f"error: study {args.study!r} has no active ratings"
              f"{' in batches ' + str(args.batches) if args.batches else ''}; import a rating batch first",
              file=sys.stderr)
        return 2
    unknown = sorted(set(args.models or []) - set(predictions["model_id"]))
    if unknown:
        print(f"warning: no predictions for models {unknown} in this study; they are left out",
              file=sys.stderr)
    tables = build_report(
        ratings, predictions, stimuli, models, n_boot=args.boot, seed=args.seed, ties=args.ties,
        unequal=args.unequal, subgroup_by=args.subgroups, progress=_progress,
    )
    written = write_report(tables, args.out, figures=not args.no_figures, predictions=predictions,
                           latex_full=args.latex_full)
    manifest = _manifest(args, study.id, ratings, predictions)
    (Path(args.out) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if args.html:
        written.append(write_html(tables, args.out / "report.html", predictions=predictions,
                                  title=f"FaceAgree report: {args.study}", manifest=manifest))
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _describe_models(session) -> pd.DataFrame | None:
    """Model descriptions from the registry (None lets the engine infer label sets)."""
    try:
        from core.workflows.catalog import describe_models
    except ImportError:
        return None
    return describe_models(session)


def _progress(done: int, total: int) -> None:
    print(f"  analysis step {done}/{total}", file=sys.stderr)


def write_report(
    tables: dict[str, pd.DataFrame], out: Path, *, figures: bool = True,
    predictions: pd.DataFrame | None = None, latex_full: bool = False,
) -> list[Path]:
    """Write the tables (CSV, one XLSX), LaTeX tables (compact unless ``latex_full``) and figures
    of ``tables`` under ``out``."""
    from core.reporting import exports

    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "latex").mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        path = out / "tables" / f"{name}.csv"
        path.write_bytes(exports.to_csv_bytes(table))
        written.append(path)
    xlsx = out / "tables.xlsx"
    xlsx.write_bytes(exports.to_xlsx_bytes({k: v for k, v in tables.items() if len(v.columns)}))
    written.append(xlsx)
    for name, (source, filters, columns, caption) in LATEX_TABLES.items():
        table = _latex_rows(tables.get(source, pd.DataFrame()), filters, columns)
        if table.empty:
            continue
        table = table if latex_full else exports.compact_table(table)
        path = out / "latex" / f"{name}.tex"
        path.write_text(exports.to_latex(table, caption, f"tab:{name.replace('_', '-')}"), encoding="utf-8")
        written.append(path)
    if figures:
        written += write_figures(tables, out / "figures", predictions)
    return written


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
    from core.reporting.exports import save_chart
    from core.reporting.html_report import report_figures

    return [path for figure in report_figures(tables, predictions)
            for path in save_chart(figure.chart, folder / figure.name)]


def write_html(tables: dict[str, pd.DataFrame], path: Path, *, predictions: pd.DataFrame | None,
               title: str, manifest: dict) -> Path:
    """The self-contained HTML report (``core.reporting.html_report``)."""
    from core.reporting.html_report import render_html, report_figures

    page = render_html(tables, report_figures(tables, predictions), title=title, manifest=manifest,
                       descriptions=TABLES)
    path.write_text(page, encoding="utf-8")
    return path


def _manifest(args: argparse.Namespace, study_id: int, ratings: pd.DataFrame,
              predictions: pd.DataFrame) -> dict:
    return {
        "study": args.study, "study_id": study_id, "boot": args.boot, "seed": args.seed,
        "ties": args.ties, "unequal": args.unequal, "subgroups": args.subgroups,
        "batches": sorted(int(b) for b in ratings["batch_id"].unique()),
        "models": sorted(predictions["model_id"].unique().tolist()),
        "n_ratings": len(ratings), "n_predictions": len(predictions),
        "tables": TABLES, "versions": {name: version(name) for name in LIBRARIES},
    }
