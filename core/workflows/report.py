"""A study's report folder from the database: load the active ratings, predictions and stimuli,
run every agreement statistic, write the files (``core.reporting.report_files``).

The ``report`` command and the report-export job both call :func:`write_study_report`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.agreement.report import build_report
from core.reporting.report_files import manifest, write_html, write_methods, write_report
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.models import Study


class ReportError(ValueError):
    """The report cannot be written (unknown study, no ratings); the message says what to do."""


@dataclass(frozen=True)
class ReportOptions:
    """What to report and how; the defaults are those of ``python -m core report``."""

    study: str
    out: Path
    boot: int = 1000
    seed: int = 0
    models: list[str] | None = None
    batches: list[int] | None = None
    ties: str = "none"
    unequal: str = "modal"
    subgroups: list[str] | None = None
    consensus_of: list[str] | None = None
    figures: bool = True
    html: bool = False
    latex_full: bool = False
    warnings: list[str] = field(default_factory=list, compare=False)


def write_study_report(
    factory: sessionmaker[Session], options: ReportOptions,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write the report folder of ``options.study`` and return the files written.

    Models asked for without predictions are left out with a note in ``options.warnings``.
    """
    if options.boot < 0:
        raise ReportError(f"the number of bootstrap resamples must be >= 0, got {options.boot}")
    with factory() as session:
        study = session.scalar(select(Study).where(Study.name == options.study))
        if study is None:
            names = session.scalars(select(Study.name).order_by(Study.name)).all()
            raise ReportError(f"no study named {options.study!r}; studies: {', '.join(names) or '(none)'}")
        ratings = load_ratings(session, study.id, options.batches)
        stimuli = load_stimuli(session, study.id)
        predictions = load_predictions(session, study.id, options.models)
        models = _describe_models(session)
    if ratings.empty:
        batches = f" in batches {options.batches}" if options.batches else ""
        raise ReportError(f"study {options.study!r} has no active ratings{batches}; import a rating batch first")
    unknown = sorted(set(options.models or []) - set(predictions["model_id"].unique()))
    if unknown:
        options.warnings.append(f"no predictions for models {unknown} in this study; they are left out")
    tables = build_report(
        ratings, predictions, stimuli, models, n_boot=options.boot, seed=options.seed,
        ties=options.ties, unequal=options.unequal, subgroup_by=options.subgroups,
        consensus_of=options.consensus_of, progress=progress,
    )
    out = Path(options.out)
    written = write_report(tables, out, figures=options.figures, predictions=predictions,
                           latex_full=options.latex_full)
    written += write_methods(tables, out, models, n_boot=options.boot, seed=options.seed)
    described = manifest(_parameters(options, study.id), ratings, predictions)
    (out / "manifest.json").write_text(json.dumps(described, indent=2), encoding="utf-8")
    if options.html:
        written.append(write_html(tables, out / "report.html", predictions=predictions,
                                  title=f"FaceAgree report: {options.study}", manifest=described))
    return written


def _parameters(options: ReportOptions, study_id: int) -> dict:
    parameters = asdict(options)
    for key in ("out", "figures", "html", "latex_full", "warnings"):
        parameters.pop(key)
    return {"study": options.study, "study_id": study_id, **parameters}


def _describe_models(session: Session) -> pd.DataFrame | None:
    """Model descriptions from the catalog (None lets the statistics infer label sets)."""
    from core.workflows.catalog import describe_models

    return describe_models(session)
