"""Weighted Cohen's kappa for ordinal ratings (Cohen 1968).

kappa_w = 1 - sum(w * observed) / sum(w * expected), with disagreement weights w_ij: linear
|i - j|, quadratic (i - j)^2, or any matrix with a zero diagonal (Cohen's own example weighs
some confusions 6 times others); expected = the product of the two raters' marginals. With
quadratic weights it equals scikit-learn's ``cohen_kappa_score(weights="quadratic")``. For
ordinal agreement among many raters use Krippendorff's alpha at level "ordinal"
(``core.agreement.krippendorff_alpha``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WEIGHTINGS: tuple[str, ...] = ("linear", "quadratic")


def disagreement_weights(n_categories: int, weights: str | np.ndarray) -> np.ndarray:
    """(K, K) disagreement weights: "linear", "quadratic", or a given matrix (checked)."""
    if isinstance(weights, str):
        if weights not in WEIGHTINGS:
            raise ValueError(f"weights must be one of {WEIGHTINGS} or a matrix, got {weights!r}")
        distance = np.abs(np.subtract.outer(np.arange(n_categories), np.arange(n_categories)))
        return distance.astype(float) ** (1 if weights == "linear" else 2)
    matrix = np.asarray(weights, float)
    if matrix.shape != (n_categories, n_categories) or np.any(np.diag(matrix) != 0):
        raise ValueError(f"a weight matrix must be {n_categories} x {n_categories} with a zero "
                         "diagonal (weights of disagreement)")
    return matrix


def weighted_kappa_from_confusion(counts: np.ndarray, weights: str | np.ndarray = "linear"
                                  ) -> np.ndarray:
    """Weighted kappa of confusion counts (..., K, K) (rows: rater one, columns: rater two)."""
    counts = np.asarray(counts, float)
    w = disagreement_weights(counts.shape[-1], weights)
    n = counts.sum(axis=(-2, -1))
    expected = counts.sum(axis=-1)[..., :, None] * counts.sum(axis=-2)[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        observed_disagreement = (w * counts).sum(axis=(-2, -1)) / n
        expected_disagreement = (w * expected).sum(axis=(-2, -1)) / (n * n)
        return np.where(expected_disagreement > 0,
                        1 - observed_disagreement / expected_disagreement, np.nan)


def weighted_kappa(a: Sequence, b: Sequence, categories: Sequence,
                   weights: str | np.ndarray = "linear") -> float:
    """Weighted kappa of two raters' ordinal ratings; ``categories`` in their order.

    Pairs with a missing value are dropped; a value outside ``categories`` raises ValueError.
    """
    order = {value: i for i, value in enumerate(categories)}
    pairs = [(x, y) for x, y in zip(a, b) if _present(x) and _present(y)]
    unknown = sorted({str(v) for pair in pairs for v in pair if v not in order})
    if unknown:
        raise ValueError(f"values {unknown[:5]} are not among the categories {list(categories)}")
    counts = np.zeros((len(categories), len(categories)))
    for x, y in pairs:
        counts[order[x], order[y]] += 1
    return float(weighted_kappa_from_confusion(counts, weights))


def _present(value: object) -> bool:
    return value is not None and value == value  # NaN != NaN
