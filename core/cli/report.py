"""``report`` command: every agreement table as CSV, the paper tables as LaTeX, and the figures.

    python -m core report --study NAME --out DIR [--boot 1000] [--seed 0]
        [--models ID ...] [--batches ID ...] [--ties none|intended] [--unequal modal|all]
        [--subgroups ATTR ...] [--no-figures] [--html]

Writes DIR/tables/<table>.csv (one per ``core.agreement.report.TABLES`` entry), DIR/tables.xlsx,
DIR/latex/<table>.tex, DIR/figures/<figure>.svg|.png, DIR/methods.md and DIR/methods.tex (the
methods paragraph with the study's numbers; their citation keys are in DIR/references.bib) and
DIR/manifest.json (the parameters and library versions, so a number in a paper can be traced
and reproduced); with --html also
DIR/report.html, one self-contained file with every table and figure that opens offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.agreement import TIE_POLICIES
from core.agreement.reliability import UNEQUAL_RATER_POLICIES
from core.cli import summary
from core.workflows.report import ReportError, ReportOptions, write_study_report
from db.engine import make_engine, make_sessionmaker


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
    report.add_argument("--consensus-of", nargs="*", metavar="ID",
                        help="models averaged into the all-pipelines consensus model (default: the "
                             "first model of each pipeline; give none to leave it out)")
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
    options = ReportOptions(
        study=args.study, out=args.out, boot=args.boot, seed=args.seed, models=args.models,
        batches=args.batches, ties=args.ties, unequal=args.unequal, subgroups=args.subgroups,
        consensus_of=args.consensus_of, figures=not args.no_figures, html=args.html,
        latex_full=args.latex_full,
    )
    try:
        written = write_study_report(make_sessionmaker(make_engine(args.db)), options, _progress)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in options.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _progress(done: int, total: int) -> None:
    print(f"  analysis step {done}/{total}", file=sys.stderr)
