"""Every model's agreement with the humans as bootstrap replicates, for comparisons across models.

The comparison tables (``model_differences``, ``pipelines``, ``replication``) need the same few
metrics per model, on chosen stimuli, with the replicates of the shared resamples:
V/A against the human mean (CCC, Pearson r, MAE, mean bias) and labels against the human
majority in scope "all" (accuracy, Cohen's kappa, macro-F1). Labels use a compact contribution
(pair count, hits, and three one-hots) instead of the full confusion matrix: 2 + 3K sums per
model instead of K^2, which is what keeps pairwise comparisons of many models fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.agreement.bootstrap import Bootstrap
from core.agreement.categorical import one_hot
from core.agreement.consensus import human_means
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import DIMENSIONS, N_LABELS, StudyData
from core.agreement.model_vs_human import reference_codes

COMPARED_CONTINUOUS: tuple[str, ...] = ("ccc", "pearson_r", "mae")
COMPARED_LABELS: tuple[str, ...] = ("accuracy", "cohen_kappa", "macro_f1")
# (dimension, metric) pairs every comparison table covers, and the reference each is scored on.
COMPARED: tuple[tuple[str, str], ...] = tuple(
    (d, m) for d in DIMENSIONS for m in COMPARED_CONTINUOUS
) + tuple(("emotion", m) for m in COMPARED_LABELS)
REFERENCE = {"valence": "human_mean", "arousal": "human_mean", "emotion": "human_majority"}


@dataclass(frozen=True)
class Scores:
    """One metric for C columns (models, or model pairs): point (C,), replicates (B, C), n (C,)."""

    point: np.ndarray
    replicates: np.ndarray
    n: np.ndarray


def label_contributions(truth: np.ndarray, predicted: np.ndarray, valid: np.ndarray | None = None
                        ) -> np.ndarray:
    """(N, C, 2 + 3K) uint8 contributions: pair, hit, and one-hots of truth, prediction and true
    positive.

    ``truth`` (N,) reference codes, ``predicted`` (N, C) codes; a pair with a missing code (or
    ``valid`` False) contributes zeros.
    """
    truth = np.broadcast_to(truth[:, None], predicted.shape)
    ok = (truth >= 0) & (predicted >= 0)
    if valid is not None:
        ok &= valid
    true_code, predicted_code = np.where(ok, truth, -1), np.where(ok, predicted, -1)
    hit = ok & (truth == predicted)
    return np.concatenate([
        ok[..., None], hit[..., None], one_hot(true_code, N_LABELS, np.uint8),
        one_hot(predicted_code, N_LABELS, np.uint8),
        one_hot(np.where(hit, true_code, -1), N_LABELS, np.uint8),
    ], axis=-1, dtype=np.uint8)


def label_statistics(sums: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, Cohen's kappa and macro-F1 from summed ``label_contributions`` (..., C, 2 + 3K).

    ``classes`` (C, K) bool: the classes macro-F1 averages over (those with a reference or a
    prediction in the full sample, as scikit-learn and ``confusion_statistics`` do); a class
    undefined in a resample is skipped there.
    """
    n, hits = sums[..., 0], sums[..., 1]
    truth, predicted, true_positive = (sums[..., 2 + i * N_LABELS:2 + (i + 1) * N_LABELS]
                                       for i in range(3))
    n_safe = np.where(n > 0, n, np.nan)
    accuracy = hits / n_safe
    chance = (truth * predicted).sum(axis=-1) / n_safe**2
    denominator = truth + predicted
    f1 = np.where(classes & (denominator > 0),
                  2 * true_positive / np.where(denominator > 0, denominator, 1), np.nan)
    defined = np.isfinite(f1)
    return {
        "accuracy": accuracy,
        "cohen_kappa": np.where(chance < 1, (accuracy - chance) / (1 - chance), np.nan),
        "macro_f1": np.where(defined, f1, 0.0).sum(axis=-1) / defined.sum(axis=-1),
        "n": n,
    }


def classes_of(point_sums: np.ndarray) -> np.ndarray:
    """Classes with a reference or a prediction in full-sample ``label_contributions`` sums."""
    return (point_sums[..., 2:2 + N_LABELS] + point_sums[..., 2 + N_LABELS:2 + 2 * N_LABELS]) > 0


def continuous_scores(
    predicted: np.ndarray, reference: np.ndarray, boot: Bootstrap,
    valid: np.ndarray | None = None, mask: np.ndarray | None = None,
) -> dict[str, Scores]:
    """Every continuous metric of (N, C) predictions against (N,) reference values."""
    reference = np.broadcast_to(reference[:, None], predicted.shape)
    point, reps = boot.evaluate(paired_moments(predicted, reference, valid), moment_statistics, mask)
    return {metric: Scores(point[metric], reps[metric], point["n"])
            for metric in ("ccc", "pearson_r", "rmse", "mae", "mean_bias")}


def label_scores(
    truth: np.ndarray, predicted: np.ndarray, boot: Bootstrap,
    valid: np.ndarray | None = None, mask: np.ndarray | None = None,
) -> dict[str, Scores]:
    """Accuracy, kappa and macro-F1 of (N, C) predicted codes against (N,) reference codes."""
    point_sums, rep_sums = boot.sums(label_contributions(truth, predicted, valid), mask)
    classes = classes_of(point_sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        point, reps = label_statistics(point_sums, classes), label_statistics(rep_sums, classes)
    return {metric: Scores(point[metric], reps[metric], point["n"]) for metric in COMPARED_LABELS}


def model_scores(
    data: StudyData, boot: Bootstrap, ties: str = "none", mask: np.ndarray | None = None,
    metrics: tuple[tuple[str, str], ...] = COMPARED,
) -> dict[tuple[str, str], Scores]:
    """Each model's score per (dimension, metric) on the stimuli in ``mask`` (default: all)."""
    scores: dict[tuple[str, str], Scores] = {}
    for dimension in DIMENSIONS:
        wanted = [m for d, m in metrics if d == dimension]
        if wanted:
            found = continuous_scores(data.model(dimension).T, human_means(data, dimension), boot,
                                      mask=mask)
            scores.update({(dimension, m): found[m] for m in wanted})
    wanted = [m for d, m in metrics if d == "emotion"]
    if wanted:
        truth = reference_codes(data, "human_majority", ties)
        found = label_scores(truth, data.model_labels.T, boot, mask=mask)
        scores.update({("emotion", m): found[m] for m in wanted})
    return scores
