"""The fast paths of ``Bootstrap.sums`` and the panel ICC give the numbers of the direct product.

Integer contributions go through an exact single-precision product, masks avoid copying the
weights, and the panel with a model reuses the humans' column sums: each is checked against the
plain double-precision ``weights[:, mask] @ contributions[mask]`` it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.agreement.bootstrap import NARROW, Bootstrap, SumsBatch
from core.agreement.categorical import agreement_contributions
from core.agreement.rater import _HumanIcc

N_ITEMS = 300


def direct(boot: Bootstrap, contributions: np.ndarray, mask: np.ndarray) -> tuple:
    flat = contributions.reshape(len(contributions), -1).astype(np.float64)
    point = flat[mask].sum(axis=0)
    return point, boot.weights(len(flat))[:, mask] @ flat[mask]


@pytest.fixture
def boot() -> Bootstrap:
    return Bootstrap(n_boot=200, seed=7)


@pytest.fixture
def codes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(-1, 8, (N_ITEMS, 40)), rng.integers(-1, 8, (N_ITEMS, 40))


@pytest.mark.parametrize("share", [1.0, 0.4])
@pytest.mark.parametrize("raters", [2, 40])  # narrow (zeroed rows) and wide (subset) products
def test_integer_contributions_are_summed_exactly(boot, codes, share, raters):
    contributions = agreement_contributions(codes[0][:, :raters], codes[1][:, :raters], 8)
    assert contributions.dtype == np.uint8
    assert (contributions.shape[1] * contributions.shape[2] > NARROW) == (raters > 2)
    mask = np.random.default_rng(2).random(N_ITEMS) < share
    point, reps = boot.sums(contributions, mask)
    expected_point, expected_reps = direct(boot, contributions, mask)
    assert point.dtype == reps.dtype == np.float64
    np.testing.assert_array_equal(point.reshape(-1), expected_point)
    np.testing.assert_array_equal(reps.reshape(boot.n_boot, -1), expected_reps)


def test_integers_too_large_for_single_precision_use_double(boot):
    contributions = np.full((N_ITEMS, 3), 1 << 20, dtype=np.int64)
    contributions[::7] += 1  # 300 * 2**20 > 2**24: single precision would round
    point, reps = boot.sums(contributions)
    expected_point, expected_reps = direct(boot, contributions, np.ones(N_ITEMS, bool))
    np.testing.assert_array_equal(point, expected_point)
    np.testing.assert_array_equal(reps, expected_reps)


@pytest.mark.parametrize("columns", [5, NARROW + 30])
def test_masked_double_contributions_match_the_direct_product(boot, columns):
    rng = np.random.default_rng(3)
    contributions = rng.normal(size=(N_ITEMS, columns))
    contributions[rng.random(N_ITEMS) < 0.1] = np.nan  # masked-out rows may hold anything
    mask = np.isfinite(contributions).all(axis=1) & (rng.random(N_ITEMS) < 0.5)
    point, reps = boot.sums(contributions, mask)
    expected_point, expected_reps = direct(boot, np.nan_to_num(contributions), mask)
    np.testing.assert_array_equal(point, expected_point)
    np.testing.assert_allclose(reps, expected_reps, rtol=1e-13, atol=1e-12)


def test_panel_icc_with_reused_human_sums_matches_the_full_panel(boot):
    rng = np.random.default_rng(4)
    latent = rng.normal(size=N_ITEMS)
    humans = latent + rng.normal(0.2, 0.5, (12, N_ITEMS))
    model = 3 + 2 * latent + rng.normal(0, 0.7, N_ITEMS)  # another scale and centre
    with_model = np.vstack([humans, model])
    keep = rng.random(N_ITEMS) < 0.8
    reused = _HumanIcc(humans.T[keep], keep, boot)
    centre, terms = reused.model_terms(model)
    batch = SumsBatch(boot)
    handle = batch.add(terms)
    joined = reused.with_model(centre, *batch.sums(handle))
    full = _HumanIcc(with_model.T[keep], keep, boot).result
    np.testing.assert_allclose(joined[0], full[0], rtol=1e-12)
    np.testing.assert_allclose(joined[1], full[1], rtol=1e-12)
    np.testing.assert_allclose(joined[3], full[3], rtol=1e-12)
    assert joined[2] == full[2] == keep.sum()


def test_a_batch_gives_each_queued_array_its_own_sums(boot):
    """Arrays summed together (NARROW columns per product) get what ``sums`` gives each alone."""
    rng = np.random.default_rng(8)
    queued = [(rng.normal(size=(N_ITEMS, width)), rng.random(N_ITEMS) < 0.7 if width % 2 else None)
              for width in (4, 10, 3, 40, 30, NARROW + 5, 1)]
    queued.append((rng.integers(0, 3, (N_ITEMS, 2, 3)), None))
    batch = SumsBatch(boot)
    handles = [batch.add(contributions, mask) for contributions, mask in queued]
    for handle, (contributions, mask) in zip(handles, queued):
        point, reps = batch.sums(handle)
        expected_point, expected_reps = boot.sums(contributions, mask)
        assert point.shape == expected_point.shape and reps.shape == expected_reps.shape
        np.testing.assert_allclose(point, expected_point, rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(reps, expected_reps, rtol=1e-13, atol=1e-12)
    with pytest.raises(RuntimeError, match="summed already"):
        batch.add(queued[0][0])


@pytest.mark.parametrize("columns", [6, NARROW + 30])
def test_all_zero_columns_are_skipped_with_the_same_sums(boot, columns):
    """A dimension nobody rated gives zero contributions: its columns are not multiplied."""
    rng = np.random.default_rng(5)
    contributions = rng.normal(size=(N_ITEMS, columns))
    contributions[:, ::3] = 0.0
    mask = rng.random(N_ITEMS) < 0.6
    point, reps = boot.sums(contributions, mask)
    expected_point, expected_reps = direct(boot, contributions, mask)
    np.testing.assert_array_equal(point, expected_point)
    np.testing.assert_allclose(reps, expected_reps, rtol=1e-13, atol=1e-12)
    assert (reps[:, ::3] == 0).all()


def test_narrow_products_keep_no_double_precision_copy_of_the_weights(boot):
    """Only a wide double-precision product caches the double weights (a vote study's are
    all narrow: 286 MB saved at 35,708 stimuli x 1,000 resamples)."""
    rng = np.random.default_rng(6)
    boot.sums(rng.normal(size=(N_ITEMS, NARROW)))
    assert N_ITEMS not in boot._double
    boot.sums(rng.normal(size=(N_ITEMS, NARROW + 1)))
    assert N_ITEMS in boot._double


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_a_view_in_another_memory_order_is_summed_as_its_copy(boot, share):
    """``paired_moments`` returns a (stimuli, raters, moments) view of a (stimuli, moments,
    raters) array; its sums come back in the view's order without a copy being summed."""
    rng = np.random.default_rng(9)
    planes = rng.normal(size=(N_ITEMS, 9, 30))
    view = np.moveaxis(planes, 1, -1)
    assert not view.flags.c_contiguous
    mask = rng.random(N_ITEMS) < share
    point, reps = boot.sums(view, mask)
    expected_point, expected_reps = boot.sums(np.ascontiguousarray(view), mask)
    assert point.shape == (30, 9) and reps.shape == (boot.n_boot, 30, 9)
    np.testing.assert_allclose(point, expected_point, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(reps, expected_reps, rtol=1e-13, atol=1e-12)
