"""The ICC's F-distribution helpers equal scipy.stats.f, which the report no longer imports
(importing scipy.stats took ~0.7 s of every ``python -m core report``, issue 10)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from core.agreement.reliability import _f_quantile, _f_survival

DEGREES = [np.nan, -1.0, 0.0, 1e-300, 0.3, 1.0, 24.0, 275.0, 1e12, np.inf]
F_VALUES = [np.nan, -np.inf, -1.0, -1e-17, -0.0, 0.0, 1e-300, 0.5, 1.0, 55.2, 1e300, np.inf]


@pytest.mark.parametrize("q", [1e-9, 0.025, 0.5, 0.975])
def test_quantile_equals_scipy_stats(q: float) -> None:
    for df1, df2 in itertools.product(DEGREES, DEGREES):
        expected = stats.f.ppf(q, df1, df2)
        assert np.array_equal(_f_quantile(q, df1, df2), expected, equal_nan=True), (q, df1, df2)


def test_survival_equals_scipy_stats_on_edges() -> None:
    """F <= 0 is where plain fdtrc (NaN) and stats.f.sf (1) part ways."""
    for df1, df2, f in itertools.product(DEGREES, DEGREES, F_VALUES):
        expected = stats.f.sf(f, df1, df2)
        assert np.array_equal(_f_survival(f, df1, df2), expected, equal_nan=True), (f, df1, df2)


def test_icc_p_values_and_intervals_equal_scipy_stats() -> None:
    from core.agreement.reliability import icc_matrix

    rng = np.random.default_rng(3)
    table = icc_matrix(rng.normal(size=(30, 1)) + rng.normal(scale=0.7, size=(30, 6)))
    assert table["p"].tolist() == [stats.f.sf(f, 29, d) for f, d in zip(table["F"], table["df2"])]
    one_way = table.iloc[0]
    f_low = one_way["F"] / stats.f.ppf(0.975, 29, 30 * 5)
    assert one_way["ci_low"] == 1 - 6 / (f_low + 5)
