"""Agreement on categorical labels: Cohen's and Fleiss' kappa, confusion-based metrics, JSD.

Labels are integer codes 0..K-1 (-1 = missing). Every statistic is computed from summed
per-stimulus contributions (confusion one-hots, vote counts), so the bootstrap can resample them
with one matrix product (see ``bootstrap``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABEL_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "cohen_kappa")


def cohen_kappa(a: Sequence, b: Sequence, labels: Sequence | None = None) -> float:
    """Cohen's (unweighted) kappa of two raters; pairs with a missing label are dropped.

    ``labels`` fixes the category set (sklearn's ``labels=``); unused categories do not change
    unweighted kappa but must be given for a reproducible confusion layout.
    """
    from sklearn.metrics import cohen_kappa_score  # imported here: sklearn takes seconds to load

    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    keep = np.array([x is not None and x == x and y is not None and y == y for x, y in zip(a, b)])
    if keep.sum() == 0:
        return float("nan")
    return float(cohen_kappa_score(a[keep], b[keep], labels=labels))


def one_hot(codes: np.ndarray, n_labels: int, dtype: type = np.float64) -> np.ndarray:
    """(..., n_labels) indicator of integer codes; code -1 gives a row of zeros."""
    return (codes[..., None] == np.arange(n_labels)).astype(dtype)


def code_counts(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """(units, n_codes) count of each code per column of a raters x units code matrix (-1 =
    missing): ``one_hot(codes.T, n_codes).sum(axis=1)`` without the raters x units x codes array."""
    rater_idx, unit_idx = np.nonzero(codes >= 0)
    cells = unit_idx * n_codes + codes[rater_idx, unit_idx]
    counts = np.bincount(cells, minlength=codes.shape[1] * n_codes)
    return counts.reshape(codes.shape[1], n_codes).astype(np.float64)


def confusion_contributions(
    truth: np.ndarray, predicted: np.ndarray, n_labels: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """(..., n_labels * n_labels) one-hot (uint8) of the (truth, predicted) cell per stimulus.

    Pairs where either code is missing (or ``valid`` is False) contribute nothing.
    """
    ok = (truth >= 0) & (predicted >= 0)
    if valid is not None:
        ok &= valid
    cell = np.where(ok, truth.astype(np.int64) * n_labels + predicted, -1)
    return one_hot(cell, n_labels * n_labels, np.uint8)


def confusion_statistics(
    counts: np.ndarray, classes: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Accuracy, Cohen's kappa, macro-F1 and per-class recall from confusion counts (..., K, K).

    Rows are the reference (truth), columns the prediction. ``classes`` (K,) bool selects the
    classes macro-F1 averages over (default: every class with a reference or predicted case in
    ``counts``, as scikit-learn does); a class undefined in a resample is skipped there.
    """
    n = counts.sum(axis=(-2, -1))
    n_safe = np.where(n > 0, n, np.nan)
    hits = np.trace(counts, axis1=-2, axis2=-1)
    truth_totals, predicted_totals = counts.sum(axis=-1), counts.sum(axis=-2)
    agreement = hits / n_safe
    chance = (truth_totals * predicted_totals).sum(axis=-1) / n_safe**2
    true_positive = np.diagonal(counts, axis1=-2, axis2=-1)
    f1_denominator = truth_totals + predicted_totals
    f1 = np.where(f1_denominator > 0, 2 * true_positive / np.where(f1_denominator > 0, f1_denominator, 1), np.nan)
    if classes is None:
        classes = f1_denominator > 0
    f1 = np.where(classes, f1, np.nan)
    defined = np.isfinite(f1)
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = np.where(defined, f1, 0.0).sum(axis=-1) / defined.sum(axis=-1)
    return {
        "accuracy": agreement,
        "cohen_kappa": np.where(chance < 1, (agreement - chance) / (1 - chance), np.nan),
        "macro_f1": macro,
        "recall": np.where(truth_totals > 0, true_positive / np.where(truth_totals > 0, truth_totals, 1), np.nan),
        "n": n,
    }


def kappa_from_confusion(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion counts (..., K, K)."""
    return confusion_statistics(counts)["cohen_kappa"]


def agreement_contributions(
    a: np.ndarray, b: np.ndarray, n_labels: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """(..., 1 + 1 + 2K) uint8 contributions for Cohen's kappa without a full confusion
    matrix: pair count, agreements, and both raters' one-hot labels (the marginals)."""
    ok = (a >= 0) & (b >= 0)
    if valid is not None:
        ok &= valid
    # Filled in place: concatenating one-hot arrays held the result twice (model vs model at
    # FER+ size: 45 pairs x 35,708 stimuli x 18 columns, 230 MB each).
    contributions = np.zeros(ok.shape + (2 + 2 * n_labels,), np.uint8)  # 0/1 counts: exact sums
    contributions[..., 0] = ok
    contributions[..., 1] = ok & (a == b)
    for offset, codes in ((2, a), (2 + n_labels, b)):
        codes = np.where(ok, codes, -1)
        for label in range(n_labels):
            contributions[..., offset + label] = codes == label
    return contributions


def agreement_statistics(sums: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """Accuracy (share of agreements) and Cohen's kappa from ``agreement_contributions`` sums."""
    n, hits = sums[..., 0], sums[..., 1]
    n_safe = np.where(n > 0, n, np.nan)
    first, second = sums[..., 2:2 + n_labels], sums[..., 2 + n_labels:]
    agreement = hits / n_safe
    chance = (first * second).sum(axis=-1) / n_safe**2
    return {
        "accuracy": agreement,
        "cohen_kappa": np.where(chance < 1, (agreement - chance) / (1 - chance), np.nan),
        "n": n,
    }


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between rows of two distributions.

    Rows are renormalised to sum to one; equals ``scipy.spatial.distance.jensenshannon(p, q,
    base=2) ** 2``. Rows containing NaN give NaN.
    """
    p = np.asarray(p, float)
    q = np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
        m = (p + q) / 2
        left = np.where(p > 0, p * np.log2(p / m), 0.0)
        right = np.where(q > 0, q * np.log2(q / m), 0.0)
    divergence = (left.sum(axis=-1) + right.sum(axis=-1)) / 2
    broken = np.isnan(p).any(axis=-1) | np.isnan(q).any(axis=-1)
    return np.where(broken, np.nan, np.clip(divergence, 0.0, 1.0))


def fleiss_contributions(counts: np.ndarray) -> np.ndarray:
    """(N, 3 + 2K) per-item contributions to Fleiss' kappa from vote counts (N, K).

    Items with fewer than two ratings contribute nothing. Columns: item indicator, the item's
    observed agreement P_i, pairs n_i(n_i - 1), votes n_ij (K), and n_ij (n_i - n_ij) (K).
    """
    n_i = counts.sum(axis=1)
    ok = n_i >= 2
    pairs = np.where(ok, n_i * (n_i - 1), 0.0)
    agree = np.where(ok, (counts * (counts - 1)).sum(axis=1) / np.where(ok, pairs, 1), 0.0)
    votes = np.where(ok[:, None], counts, 0.0)
    return np.column_stack([ok, agree, pairs, votes, votes * (n_i[:, None] - votes)])


def fleiss_statistics(sums: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """Fleiss' kappa and per-category kappas from summed ``fleiss_contributions``.

    With a constant number of raters n per item this is exactly Fleiss (1971): P-bar is the mean
    of P_i, p_j = sum_i n_ij / (N n), kappa_j = 1 - sum_i n_ij (n - n_ij) / (N n (n-1) p_j q_j).
    With unequal counts, P_i uses each item's own n_i and p_j pools all votes.
    """
    items, agree, pairs = sums[..., 0], sums[..., 1], sums[..., 2]
    votes = sums[..., 3:3 + n_labels]
    disagree = sums[..., 3 + n_labels:]
    share = votes / votes.sum(axis=-1, keepdims=True)
    observed = agree / items
    chance = (share**2).sum(axis=-1)
    category = 1 - disagree / (pairs[..., None] * share * (1 - share))
    return {
        "kappa": np.where(chance < 1, (observed - chance) / (1 - chance), np.nan),
        "category_kappa": np.where((share > 0) & (share < 1), category, np.nan),
        "n": items,
    }


def fleiss_kappa_counts(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """Fleiss' kappa and the per-category kappas of an items x categories count table."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = fleiss_statistics(fleiss_contributions(counts).sum(axis=0), counts.shape[1])
    return float(stats["kappa"]), stats["category_kappa"]
