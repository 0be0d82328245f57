"""How many raters? Reliability of a mean of k raters by the Spearman-Brown prophecy formula.

From a single-rater reliability rho (ICC(A,1) or ICC(1,1) of the human panel), the reliability
of the mean of k raters is k rho / (1 + (k - 1) rho) (Spearman 1910; Brown 1910; Shrout &
Fleiss 1979, eq. for ICC(.,k)), and the raters needed for a target reliability r are
ceil(r (1 - rho) / (rho (1 - r))). At k = the panel size this is exactly ICC(A,k) / ICC(1,k).
Both are increasing in rho, so the F-distribution CI of the ICC maps to their CIs bound by
bound (for raters needed, the upper ICC bound gives the lower count).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import DIMENSIONS, StudyData
from core.agreement.reliability import icc, icc_label, others_mean

PANEL_GRID: tuple[int, ...] = (2, 3, 5, 10, 20, 50, 100)
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


def ceiling_by_panel_size(
    data: StudyData, boot: Bootstrap, sizes: Sequence[int] | None = None, n_subsets: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """The V/A human ceiling (median rater leave-one-out CCC) had the panel been smaller.

    For each panel size k (default: ``PANEL_GRID`` below the panel, and the panel), ``n_subsets``
    random panels of k raters (drawn from ``seed``: for each k in order, one
    ``Generator.choice(R, k, replace=False)`` per subset; the full panel once) each give their
    ceiling; the estimate is their mean, its CI from the shared stimulus resamples (the
    subsets' spread is in subset_min / subset_max). Opt-in, not in ``build_report``: it costs
    about k x n_subsets rater columns per size. Columns: dimension, metric ("ccc"), panel_size,
    estimate, ci_low, ci_high, n_subsets, subset_min, subset_max, ci_method.
    """
    n_raters = data.n_raters
    if sizes is None:
        sizes = sorted({k for k in PANEL_GRID if k < n_raters} | {n_raters})
    rng = np.random.default_rng(seed)
    panels = {k: [np.arange(n_raters)] if k >= n_raters else
              [rng.choice(n_raters, k, replace=False) for _ in range(n_subsets)] for k in sizes}
    rows = []
    for dimension in DIMENSIONS:
        matrix = data.human(dimension)
        for k, subsets in panels.items():
            point, reps = _subset_ceilings(matrix, subsets, boot)
            low, high = boot.interval(reps.mean(axis=1))
            rows.append({"dimension": dimension, "metric": "ccc", "panel_size": int(k),
                         "estimate": float(point.mean()), "ci_low": float(low),
                         "ci_high": float(high), "n_subsets": len(subsets),
                         "subset_min": float(point.min()), "subset_max": float(point.max()),
                         "ci_method": boot.ci_method})
    return pd.DataFrame(rows)


def _subset_ceilings(matrix: np.ndarray, subsets: list[np.ndarray], boot: Bootstrap
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Median leave-one-out CCC within each subset of raters: points (S,), replicates (B, S)."""
    contributions = np.concatenate(
        [paired_moments(matrix[subset].T, others_mean(matrix[subset]).T) for subset in subsets],
        axis=1)
    point, reps = boot.evaluate(contributions, moment_statistics)
    shape = (len(subsets), len(subsets[0]))
    scored = (point["n"] > 0) & np.isfinite(point["ccc"])
    ccc = np.where(scored, point["ccc"], np.nan).reshape(shape)
    ccc_reps = np.where(scored, reps["ccc"], np.nan).reshape((-1,) + shape)
    with warnings.catch_warnings():  # a subset without any scored rater is NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(ccc, axis=1), np.nanmedian(ccc_reps, axis=2)

