"""Vote-count batches: agreement from counts alone, since their raters have no identities.

A votes file (FER+ style) says how many raters chose each emotion for each stimulus, not who.
The import numbers the votes ``votes#<batch>:1..n`` within each stimulus, so "rater 3" is a
different person on every stimulus and depends on the order of the count columns. Any per-rater
statistic of such raters (leave-one-out scores, the median of them as the ceiling, a model's
percentile among them) is therefore not applicable. The label ceiling is computed from the
counts instead: the expected agreement of one random vote with the majority of the other votes
on its stimulus. For a stimulus with counts c (n votes) each label l with c_l > 0 is left out
once, the majority of c - e_l is taken under the report's tie policy, and the outcome weighs
c_l / n, so each stimulus weighs one, as for a rater who rated every stimulus once. Exact and
independent of column order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap
from core.agreement.categorical import agreement_statistics
from core.agreement.consensus import majority_codes
from core.agreement.data import N_LABELS, StudyData
from core.agreement.reliability import LeaveOneOut
from core.ratings.layouts import VOTE_RATER

VOTE_PREFIX = VOTE_RATER.split("{", 1)[0]
CEILING_METHOD = "one vote vs the majority of the other votes (exact, from counts)"
LOO_METHOD = "median leave-one-rater-out score"
NOT_APPLICABLE = ("vote-count batches have no rater identities: their votes are left out of "
                  "per-rater scores (leave-one-out, model percentiles); the label ceiling comes "
                  "from the counts (" + CEILING_METHOD + ")")


def vote_raters(data: StudyData) -> np.ndarray:
    """(R,) True for the anonymous raters of vote-count batches."""
    return np.array([str(rater).startswith(VOTE_PREFIX) for rater in data.raters], dtype=bool)


def without_vote_raters(scores: LeaveOneOut, votes: np.ndarray) -> LeaveOneOut:
    """Leave-one-out scores with vote raters marked as having none (n = 0)."""
    return replace(scores, n={key: np.where(votes, 0, n) for key, n in scores.n.items()})


def held_out_vote_contributions(counts: np.ndarray, ties: str, intended: np.ndarray) -> np.ndarray:
    """(N, 2 + 2K) per-stimulus sums for ``agreement_statistics``: each held-out vote's label
    against the majority of the remaining votes, weighted c_l / n (unresolved ties left out)."""
    n_items, n_labels = counts.shape
    remaining = counts[:, None, :] - np.eye(n_labels)[None]
    majority, _ = majority_codes(remaining, ties, np.broadcast_to(intended[:, None], (n_items, n_labels)))
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(counts > 0, counts / counts.sum(axis=1, keepdims=True), 0.0)
    weight = np.where(majority >= 0, weight, 0.0)
    chosen = np.zeros((n_items, n_labels))
    rows = np.arange(n_items)
    for label in range(n_labels):
        np.add.at(chosen, (rows, np.maximum(majority[:, label], 0)), weight[:, label])
    hits = (weight * (majority == np.arange(n_labels))).sum(axis=1)
    return np.column_stack([weight.sum(axis=1), hits, weight, chosen])


def counts_ceiling(data: StudyData, boot: Bootstrap, ties: str = "none") -> pd.DataFrame:
    """Label ceiling rows (accuracy, cohen_kappa) from vote counts, with bootstrap CIs.

    Same columns as ``human_ceiling`` plus ``method``; n = stimuli contributing a scored vote.
    """
    contributions = held_out_vote_contributions(data.vote_counts(), ties, data.intended)
    point, replicates = boot.evaluate(contributions, lambda s: agreement_statistics(s, N_LABELS))
    n = int((contributions[:, 0] > 0).sum())
    rows = []
    for metric in ("accuracy", "cohen_kappa"):
        low, high = boot.interval(replicates[metric])
        rows.append({"dimension": "emotion", "metric": metric, "estimate": float(point[metric]),
                     "ci_low": float(low), "ci_high": float(high), "human_q25": np.nan,
                     "human_q75": np.nan, "human_min": np.nan, "human_max": np.nan, "n": n,
                     "ci_method": boot.ci_method, "method": CEILING_METHOD})
    return pd.DataFrame(rows)


def ceiling_with_counts(ceiling: pd.DataFrame, from_counts: pd.DataFrame) -> pd.DataFrame:
    """The ceiling table with its label rows replaced by the counts-based ones."""
    kept = ceiling.loc[ceiling["dimension"] != "emotion"].assign(method=LOO_METHOD)
    return pd.concat([kept, from_counts], ignore_index=True)


def mark_not_applicable(model_as_rater: pd.DataFrame) -> pd.DataFrame:
    """Say on each label row without human raters why its percentile is missing."""
    if model_as_rater.empty:
        return model_as_rater
    frame = model_as_rater.copy()
    alone = (frame["dimension"] == "emotion") & (frame["n_raters"] == 0)
    frame.loc[alone, "note"] = [
        "; ".join(part for part in (note, NOT_APPLICABLE) if part) for note in frame.loc[alone, "note"]
    ]
    return frame
