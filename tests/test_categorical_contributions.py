"""Cohen's kappa contributions, filled in place for memory (issue 12), equal their definition:
pair indicator, agreement indicator, then both members' one-hot labels."""

from __future__ import annotations

import numpy as np
import pytest

from core.agreement.categorical import agreement_contributions, one_hot


def by_definition(a, b, n_labels, valid=None):
    ok = (a >= 0) & (b >= 0)
    if valid is not None:
        ok = ok & valid
    w = ok.astype(np.float64)
    return np.concatenate([w[..., None], (w * (a == b))[..., None],
                           one_hot(np.where(ok, a, -1), n_labels), one_hot(np.where(ok, b, -1), n_labels)],
                          axis=-1)


@pytest.mark.parametrize("shapes", [((50, 6), (50, 6)), ((50, 6), (50, 1)), ((50,), (50,))])
@pytest.mark.parametrize("with_valid", [False, True])
def test_contributions_equal_the_definition(shapes, with_valid: bool) -> None:
    rng = np.random.default_rng(len(shapes[1]) + with_valid)
    a, b = rng.integers(-1, 5, size=shapes[0]), rng.integers(-1, 5, size=shapes[1])
    valid = rng.random(shapes[0][:1] + (1,) * (len(shapes[0]) - 1)) > 0.3 if with_valid else None
    result = agreement_contributions(a, b, 5, valid)
    expected = by_definition(a, b, 5, valid)
    assert result.dtype == np.uint8 and result.shape == expected.shape  # 0/1 counts
    assert np.array_equal(result, expected)
