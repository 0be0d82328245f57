"""How many raters? Reliability of a mean of k raters by the Spearman-Brown prophecy formula.

From a single-rater reliability rho (ICC(A,1) or ICC(1,1) of the human panel), the reliability
of the mean of k raters is k rho / (1 + (k - 1) rho) (Spearman 1910; Brown 1910; Shrout &
Fleiss 1979, eq. for ICC(.,k)), and the raters needed for a target reliability r are
ceil(r (1 - rho) / (rho (1 - r))). At k = the panel size this is exactly ICC(A,k) / ICC(1,k).
Both are increasing in rho, so the F-distribution CI of the ICC maps to their CIs bound by
bound (for raters needed, the upper ICC bound gives the lower count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.agreement.data import DIMENSIONS, StudyData
from core.agreement.reliability import icc, icc_label

PLANNING_FORMS: tuple[str, ...] = ("ICC(A,1)", "ICC(1,1)")
TARGETS: tuple[float, ...] = (0.7, 0.8, 0.9)


def spearman_brown(reliability: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    """Reliability of the mean of ``k`` raters from single-rater ``reliability``."""
    rho, k = np.asarray(reliability, float), np.asarray(k, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return k * rho / (1 + (k - 1) * rho)


def raters_needed(reliability: np.ndarray | float, target: float) -> np.ndarray:
    """Fewest raters whose mean reaches ``target`` reliability (inf when rho <= 0, NaN if NaN)."""
    rho = np.asarray(reliability, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = target * (1 - rho) / (rho * (1 - target))
        # a hair below an integer is that integer (0.9 * 0.1 / ... gives 9.000000000000002)
        needed = np.ceil(np.round(exact, 9))
    return np.where(np.isnan(rho), np.nan, np.where(rho > 0, np.maximum(needed, 1), np.inf))


def rater_planning(
    data: StudyData, max_factor: int = 2, targets: Sequence[float] = TARGETS,
    icc_tables: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Spearman-Brown reliability of k = 1..``max_factor`` x panel raters, and raters needed.

    ``icc_tables``: the ``icc`` table of the report (computed here when None). Columns:
    dimension, form, label, quantity ("reliability_of_mean" | "raters_needed"), k, target,
    estimate, ci_low, ci_high, panel_size, n (stimuli in the ICC block), source_estimate (the
    single-rater ICC), note, ci_method (the ICC CI mapped bound by bound: still exact).
    """
    if icc_tables is None:
        icc_tables = pd.concat([icc(data, d) for d in DIMENSIONS], ignore_index=True)
    rows = []
    for dimension in DIMENSIONS:
        table = icc_tables[icc_tables["dimension"] == dimension].set_index("form")
        if table.empty:
            continue
        panel = int(table["k"].iloc[0])
        for form in PLANNING_FORMS:
            source = table.loc[form]
            base = {"dimension": dimension, "form": form, "label": icc_label(form),
                    "panel_size": panel, "n": int(source["n"]),
                    "source_estimate": float(source["estimate"]), "note": source.get("note", ""),
                    "ci_method": "F distribution (exact)"}
            bounds = (source["estimate"], source["ci_low"], source["ci_high"])
            ks = np.arange(1, max(max_factor * panel, 1) + 1)
            values = [spearman_brown(b, ks) for b in bounds]
            for i, k in enumerate(ks):
                rows.append({**base, "quantity": "reliability_of_mean", "k": int(k),
                             "target": np.nan, "estimate": values[0][i], "ci_low": values[1][i],
                             "ci_high": values[2][i]})
            for target in targets:
                estimate, low, high = (raters_needed(b, target) for b in bounds)
                rows.append({**base, "quantity": "raters_needed", "k": np.nan, "target": target,
                             "estimate": float(estimate), "ci_low": float(high),
                             "ci_high": float(low)})
    columns = ["dimension", "form", "label", "quantity", "k", "target", "estimate", "ci_low",
               "ci_high", "panel_size", "n", "source_estimate", "note", "ci_method"]
    return pd.DataFrame(rows, columns=columns)
