"""Agreement of continuous ratings (valence, arousal): Lin's CCC, Pearson r, RMSE, MAE.

All moments are population moments (ddof=0), as in Lin (1989); never mixed with ddof=1.
Pairs where either value is missing are dropped (pairwise deletion); ``n`` counts the pairs used.
"""

from __future__ import annotations

import numpy as np

CONTINUOUS_METRICS: tuple[str, ...] = ("ccc", "pearson_r", "rmse", "mae", "mean_bias")
N_MOMENTS = 9


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient with population moments (pairwise complete)."""
    return float(_statistics_of(x, y)["ccc"])


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over pairwise-complete values."""
    return float(_statistics_of(x, y)["pearson_r"])


def _statistics_of(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    moments = paired_moments(np.asarray(x, float), np.asarray(y, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return moment_statistics(moments.sum(axis=0))


def paired_moments(x: np.ndarray, y: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-stimulus contributions (..., N_MOMENTS) to the sums behind every continuous metric.

    ``x`` and ``y`` share a shape whose first axis is stimuli; pairs with a missing value (or
    ``valid`` False) contribute zeros. Values are centred on their full-sample means so sums of
    squares keep their precision; the statistics need only differences, so the shift cancels
    (the mean difference comes from the uncentred ``x - y``).
    """
    ok = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        ok &= valid
    if not ok.any():  # nothing to pair (a study without V/A ratings): zeros, no arithmetic
        return np.zeros(ok.shape + (N_MOMENTS,))
    # Laid out (stimuli, moments, ...) so that each moment is written in contiguous runs
    # (``Bootstrap.sums`` takes the returned moments-last view without copying it), and
    # written plane by plane: no list of full-size temporaries to stack.
    planes = np.empty(ok.shape[:1] + (N_MOMENTS,) + ok.shape[1:])
    w, xc, yc, xx, yy, xy, absolute, squared, d = np.moveaxis(planes, 1, 0)
    w[...] = ok
    n = np.maximum(w.sum(axis=0), 1)
    for centred, values in ((xc, x), (yc, y)):
        centred[...] = np.where(ok, values, 0.0)
        centred[...] = np.where(ok, centred - centred.sum(axis=0) / n, 0.0)
    np.multiply(xc, xc, out=xx)
    np.multiply(yc, yc, out=yy)
    np.multiply(xc, yc, out=xy)
    d[...] = np.where(ok, x - y, 0.0)
    np.abs(d, out=absolute)
    np.multiply(d, d, out=squared)
    return np.moveaxis(planes, 1, -1)


def moment_statistics(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Every continuous metric from summed contributions shaped (..., N_MOMENTS).

    CCC = 2 cov / (var_x + var_y + (mean_x - mean_y)^2), population moments (Lin 1989);
    ``mean_bias`` = mean(x - y). Undefined values are NaN: no pairs, CCC with both sides
    constant (one pair, or a resample that drew one stimulus only), r with a constant side.
    """
    n, sx, sy, sxx, syy, sxy, sabs, ssq, sd = np.moveaxis(sums, -1, 0)
    n_safe = np.where(n > 0, n, np.nan)
    mx, my = sx / n_safe, sy / n_safe
    var_x, var_y = _variance(sxx / n_safe, mx), _variance(syy / n_safe, my)
    constant = (var_x == 0) | (var_y == 0)
    cov = np.where(constant, 0.0, sxy / n_safe - mx * my)
    bias = sd / n_safe
    denominator = var_x + var_y + bias * bias
    defined = (denominator > 0) & ((var_x > 0) | (var_y > 0))
    spread = np.sqrt(var_x * var_y)
    return {
        "ccc": np.where(defined, np.clip(2 * cov / np.where(defined, denominator, 1), -1, 1), np.nan),
        "pearson_r": np.where(constant, np.nan, np.clip(cov / np.where(constant, 1, spread), -1, 1)),
        "rmse": np.sqrt(ssq / n_safe),
        "mae": sabs / n_safe,
        "mean_bias": bias,
        "n": n,
    }


def _variance(second_moment: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """E[x^2] - E[x]^2, with round-off (below 1e-12 of E[x^2]) set to an exact zero."""
    variance = second_moment - mean * mean
    return np.where(variance > 1e-12 * second_moment, variance, 0.0)
