"""The tables that answer "do the findings hold across pipelines?", built together for a report.

``model_differences`` (paired comparisons), ``pipelines`` (pipelines as the unit),
``replication`` (does a finding hold per pipeline) and ``rater_planning`` (how many raters).
The all-pipelines consensus model is added to the predictions before any table is built
(``core.agreement.pipelines.with_consensus_model``), so it appears in these tables as a model.
"""

from __future__ import annotations

import pandas as pd

from core.agreement.bootstrap import Bootstrap
from core.agreement.comparisons import model_differences
from core.agreement.data import StudyData
from core.agreement.pipelines import pipeline_summary
from core.agreement.planning import rater_planning
from core.agreement.reliability import LeaveOneOut
from core.agreement.replication import replication


def generalisation_tables(
    data: StudyData, boot: Bootstrap, ties: str = "none", *, loo: LeaveOneOut | None = None,
    icc_tables: pd.DataFrame | None = None, gaps: list[tuple[str, str, str]] | None = None,
) -> dict[str, pd.DataFrame]:
    """The four tables by name; ``loo`` and ``icc_tables`` reuse what the report computed."""
    return {
        "model_differences": model_differences(data, boot, ties, loo),
        "pipelines": pipeline_summary(data, boot, ties),
        "replication": replication(data, boot, ties, gaps, loo),
        "rater_planning": rater_planning(data, icc_tables=icc_tables),
    }
