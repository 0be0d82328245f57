"""Paired model comparisons: is one model's agreement with the humans better than another's?

For every pair of models (a, b), the difference a - b in agreement with the humans (V/A: CCC,
Pearson r, MAE against the human mean; labels: accuracy, Cohen's kappa, macro-F1 against the
human majority, scope "all") on the stimuli *both* cover, so the two scores are paired. Each
model also meets the human ceiling (median rater leave-one-out score, on the metrics the
ceiling has: CCC, r, accuracy, kappa), scored on all its stimuli as in ``model_as_rater``.

Inference from the shared resamples: the difference's percentile CI, and a two-sided bootstrap
p-value 2 * min(share <= 0, share >= 0) over the resamples where it is defined, floored at
1 / (B + 1), with Holm's adjustment over the family of one (dimension, metric): every pair and
every model-vs-ceiling comparison of that metric.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import MIN_RESAMPLES, Bootstrap, Estimate, estimates_frame
from core.agreement.consensus import human_means
from core.agreement.data import DIMENSIONS, StudyData
from core.agreement.model_vs_human import reference_codes
from core.agreement.rater import row_medians
from core.agreement.reliability import LeaveOneOut, loo_scores
from core.agreement.scores import (
    COMPARED,
    COMPARED_CONTINUOUS,
    COMPARED_LABELS,
    REFERENCE,
    Scores,
    continuous_scores,
    label_scores,
    model_scores,
)

PAIR = "model vs model"
CEILING = "model vs human ceiling"
CEILING_ID = "human_ceiling"


def bootstrap_p_value(replicates: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of each column of (B, C) replicates of a difference.

    2 * min(share <= 0, share >= 0) over the resamples where the difference is defined, at most
    1 and at least 1 / (B + 1) (a p-value of 0 would claim more than B resamples can show); NaN
    with fewer than ``MIN_RESAMPLES`` defined resamples.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    defined = np.isfinite(replicates)
    count = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = ((replicates <= 0) & defined).sum(axis=0) / count
        above = ((replicates >= 0) & defined).sum(axis=0) / count
        p = np.clip(2 * np.minimum(below, above), 1 / (count + 1), 1.0)
    return np.where(count >= MIN_RESAMPLES, p, np.nan)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN p-values stay NaN and do not count.

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)),
    as statsmodels ``multipletests(method="holm")`` (checked in the tests; not imported here:
    loading statsmodels took 1.4 s of the report).
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    m = len(order)
    steps = (m - np.arange(m)) * p_values[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def model_differences(
    data: StudyData, boot: Bootstrap, ties: str = "none", loo: LeaveOneOut | None = None
) -> pd.DataFrame:
    """Paired differences in agreement with the humans: every pair of models, and each model
    against the human ceiling.

    Columns: comparison ("model vs model" | "model vs human ceiling"), model_a, name_a,
    pipeline_a, model_b (``human_ceiling`` for ceiling rows), name_b, pipeline_b,
    same_pipeline, dimension, reference, metric, estimate (a - b), ci_low, ci_high, n (stimuli
    both cover; ceiling rows: the model's stimuli), score_a, score_b, p_value, p_holm,
    holm_family_size, within_human_range (ceiling rows: the model's CI overlaps the raters'
    leave-one-out interquartile range; None on pair rows), score_a_ci_low, score_a_ci_high,
    human_q25, human_q75, ci_method.
    """
    if data.n_models == 0:
        return pd.DataFrame()
    estimates = _pair_estimates(data, boot, ties) + _ceiling_estimates(
        data, boot, ties, loo or loo_scores(data, boot, ties))
    if not estimates:  # one model and no named raters (e.g. vote counts only)
        return pd.DataFrame()
    frame = estimates_frame(estimates, boot)
    frame.insert(frame.columns.get_loc("n") + 1, "p_value",
                 bootstrap_p_value(np.column_stack([e.replicates for e in estimates])))
    family = frame.groupby(["dimension", "metric"], sort=False)["p_value"]
    frame.insert(frame.columns.get_loc("p_value") + 1, "p_holm",
                 family.transform(lambda p: holm(p.to_numpy())))
    frame.insert(frame.columns.get_loc("p_holm") + 1, "holm_family_size",
                 family.transform(lambda p: int(p.notna().sum())))
    return frame


def _pair_estimates(data: StudyData, boot: Bootstrap, ties: str) -> list[Estimate]:
    pairs = list(combinations(range(data.n_models), 2))
    if not pairs:
        return []
    first, second = (np.array(side) for side in zip(*pairs))
    scores: dict[tuple[str, str], Scores] = {}
    for dimension in DIMENSIONS:
        values = data.model(dimension)
        human = human_means(data, dimension)
        common = np.isfinite(values[first]) & np.isfinite(values[second]) & np.isfinite(human)
        sides, valid, inverse = _distinct_sides(values, first, second, common)
        found = continuous_scores(sides.T, human, boot, valid.T)
        scores.update({(dimension, m): _expand(found[m], inverse) for m in COMPARED_CONTINUOUS})
    codes = data.model_labels
    truth = reference_codes(data, "human_majority", ties)
    common = (codes[first] >= 0) & (codes[second] >= 0) & (truth >= 0)
    sides, valid, inverse = _distinct_sides(codes, first, second, common)
    found = label_scores(truth, sides.T, boot, valid.T)
    scores.update({("emotion", m): _expand(found[m], inverse) for m in COMPARED_LABELS})

    estimates = []
    n_pairs = len(pairs)
    for (dimension, metric), score in ((key, scores[key]) for key in COMPARED):
        for p, (a, b) in enumerate(pairs):
            estimates.append(Estimate(
                {"comparison": PAIR, **_member(data, a, "a"), **_member(data, b, "b"),
                 "same_pipeline": data.pipelines[a] == data.pipelines[b],
                 "dimension": dimension, "reference": REFERENCE[dimension], "metric": metric},
                score.point[p] - score.point[n_pairs + p],
                score.replicates[:, p] - score.replicates[:, n_pairs + p], int(score.n[p]),
                {"score_a": float(score.point[p]), "score_b": float(score.point[n_pairs + p])},
            ))
    return estimates


def _ceiling_estimates(data: StudyData, boot: Bootstrap, ties: str, loo: LeaveOneOut
                       ) -> list[Estimate]:
    metrics = tuple(key for key in COMPARED if key in loo.point)
    scores = model_scores(data, boot, ties, metrics=metrics)
    estimates = []
    for dimension, metric in metrics:
        score = scores[dimension, metric]
        raters = (loo.n[dimension, metric] > 0) & np.isfinite(loo.point[dimension, metric])
        humans = loo.point[dimension, metric][raters]
        if not humans.size:
            continue
        median_reps = row_medians(loo.replicates[dimension, metric][:, raters])
        q25, median, q75 = np.quantile(humans, [0.25, 0.5, 0.75])
        low, high = boot.interval(score.replicates)
        for m in range(data.n_models):
            overlaps = bool(low[m] <= q75 and high[m] >= q25) if np.isfinite(low[m]) else None
            estimates.append(Estimate(
                {"comparison": CEILING, **_member(data, m, "a"), "model_b": CEILING_ID,
                 "name_b": "human ceiling (median rater)", "pipeline_b": "human",
                 "same_pipeline": False, "dimension": dimension,
                 "reference": REFERENCE[dimension], "metric": metric},
                score.point[m] - median, score.replicates[:, m] - median_reps, int(score.n[m]),
                {"score_a": float(score.point[m]), "score_b": float(median),
                 "within_human_range": overlaps, "score_a_ci_low": float(low[m]),
                 "score_a_ci_high": float(high[m]), "human_q25": float(q25),
                 "human_q75": float(q75)},
            ))
    return estimates


def _distinct_sides(values: np.ndarray, first: np.ndarray, second: np.ndarray,
                    common: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (model outputs, common stimuli) columns of both sides of every pair.

    Scoring each distinct column once keeps the work near one column per model when models
    cover the same stimuli, and makes two models with identical outputs give bit-identical
    scores (their difference is exactly 0, not BLAS round-off). Returns the distinct outputs
    (U, N), their stimulus masks (U, N) and, per side of each pair (2P,), its distinct column.
    """
    outputs = np.concatenate([values[first], values[second]])
    masks = np.concatenate([common, common])
    seen: dict[bytes, int] = {}
    inverse = np.array([seen.setdefault(row.tobytes() + mask.tobytes(), len(seen))
                        for row, mask in zip(outputs, masks)])
    keep = np.unique(inverse, return_index=True)[1]
    return outputs[keep], masks[keep], inverse


def _expand(score: Scores, inverse: np.ndarray) -> Scores:
    return Scores(score.point[inverse], score.replicates[:, inverse], score.n[inverse])


def _member(data: StudyData, m: int, side: str) -> dict[str, str]:
    return {f"model_{side}": data.model_ids[m], f"name_{side}": data.model_names[m],
            f"pipeline_{side}": data.pipelines[m]}
