"""How many raters (Spearman-Brown planning table) and weighted Cohen's kappa, with golden values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from core import agreement as ag
from core.agreement.ordinal import weighted_kappa, weighted_kappa_from_confusion
from core.agreement.planning import (
    ceiling_by_panel_size,
    rater_planning,
    raters_needed,
    spearman_brown,
)
from core.agreement.synthetic import synthetic_study

# Shrout & Fleiss (1979) Table 2: 6 targets (rows) x 4 judges (columns).
SHROUT_FLEISS = np.array([
    [9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7],
], dtype=float)


def study_of(matrix: np.ndarray) -> ag.StudyData:
    """A targets x judges matrix as valence ratings (arousal the same), no labels."""
    targets, judges = np.meshgrid(np.arange(matrix.shape[0]), np.arange(matrix.shape[1]),
                                  indexing="ij")
    ratings = pd.DataFrame({
        "stimulus": [f"t{t}" for t in targets.ravel()], "stimulus_id": targets.ravel() + 1,
        "rater": [f"j{j}" for j in judges.ravel()], "batch_id": 1, "emotion": None,
        "valence": matrix.ravel(), "arousal": matrix.ravel(),
    })
    return ag.StudyData.from_frames(ratings)


def test_spearman_brown_golden_values():
    """Spearman (1910) and Brown (1910) prophecy formula k r / (1 + (k - 1) r): the textbook
    case of doubling a measure of reliability .50 gives 2(.5)/1.5 = .667; reliability .5
    needs 4 raters for .80 (4(.5)/2.5 = .8) and 9 for .90."""
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(0.5, 1) == pytest.approx(0.5)
    assert raters_needed(0.5, 0.8) == 4
    assert raters_needed(0.5, 0.9) == 9
    assert raters_needed(0.9, 0.8) == 1
    assert raters_needed(0.0, 0.8) == np.inf and raters_needed(-0.2, 0.8) == np.inf
    assert np.isnan(raters_needed(np.nan, 0.8))


def test_planning_reproduces_shrout_fleiss_mean_of_k_reliabilities():
    """Shrout & Fleiss (1979), Table 4, on their Table 2 data: ICC(1,1) = .17 with ICC(1,4) =
    .44, and ICC(2,1) = .29 with ICC(2,4) = .62; Spearman-Brown of the single-rater ICC at
    k = 4 judges gives the printed mean-of-4 values."""
    table = rater_planning(study_of(SHROUT_FLEISS)).query(
        "dimension == 'valence' and quantity == 'reliability_of_mean'").set_index(["form", "k"])
    assert table.loc[("ICC(1,1)", 4), "estimate"] == pytest.approx(0.44, abs=0.005)
    assert table.loc[("ICC(A,1)", 4), "estimate"] == pytest.approx(0.62, abs=0.005)
    assert table.loc[("ICC(A,1)", 1), "estimate"] == pytest.approx(0.29, abs=0.005)
    assert table.index.get_level_values("k").max() == 8  # up to twice the panel


def test_planning_cis_follow_the_icc_ci_and_raters_needed_bounds_swap():
    data = study_of(SHROUT_FLEISS)
    icc_table = ag.icc(data, "valence").set_index("form")
    table = rater_planning(data).query("dimension == 'valence'")
    single = table.query("form == 'ICC(A,1)' and k == 1").iloc[0]
    assert [single["ci_low"], single["ci_high"]] == pytest.approx(
        [icc_table.loc["ICC(A,1)", "ci_low"], icc_table.loc["ICC(A,1)", "ci_high"]])
    needed = table.query("form == 'ICC(A,1)' and quantity == 'raters_needed' and target == 0.8").iloc[0]
    assert needed["ci_low"] == raters_needed(icc_table.loc["ICC(A,1)", "ci_high"], 0.8)
    assert needed["ci_low"] <= needed["estimate"] <= needed["ci_high"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), n_targets=st.integers(3, 12), n_judges=st.integers(2, 6))
def test_spearman_brown_at_the_panel_size_equals_icc_of_the_mean(seed, n_targets, n_judges):
    """At k = panel size, Spearman-Brown of ICC(A,1) is ICC(A,k) and of ICC(1,1) is ICC(1,k)."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0, 1, (n_targets, 1)) + rng.normal(0, 1, (n_targets, n_judges))
    table = ag.icc_matrix(matrix).set_index("form")["estimate"]
    for single, mean in (("ICC(A,1)", "ICC(A,k)"), ("ICC(1,1)", "ICC(1,k)")):
        assert spearman_brown(table[single], n_judges) == pytest.approx(table[mean], abs=1e-9)


# --- weighted kappa ---------------------------------------------------------------------------

# Cohen (1968), Table 1: two judges, 200 cases, three diagnoses (personality disorder, neurosis,
# psychosis); rows judge B, columns judge A; counts = printed proportions x 200.
COHEN_1968 = np.array([[88, 14, 18], [10, 40, 10], [2, 6, 12]], dtype=float)
COHEN_1968_WEIGHTS = np.array([[0, 1, 3], [1, 0, 6], [3, 6, 0]], dtype=float)


def test_weighted_kappa_of_cohens_1968_example():
    """Cohen (1968), Table 1 with his disagreement weights (1 personality disorder-neurosis,
    3 personality disorder-psychosis, 6 neurosis-psychosis): observed weighted disagreement
    .90, chance-expected 1.38 (his parenthetical proportions), so kappa_w = 1 - .90 / 1.38 =
    .3478. Unweighted, the same table gives p_o = .70, p_c = .41, kappa = .29 / .59 = .4915."""
    assert weighted_kappa_from_confusion(COHEN_1968, COHEN_1968_WEIGHTS) == pytest.approx(
        1 - 0.90 / 1.38)
    assert weighted_kappa_from_confusion(COHEN_1968, 1 - np.eye(3)) == pytest.approx(0.29 / 0.59)


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weighted_kappa_equals_sklearn(weights):
    """scikit-learn's cohen_kappa_score(weights=...) on Cohen's table and on random ratings."""
    rows, columns = np.nonzero(COHEN_1968)
    a = np.repeat(rows, COHEN_1968[rows, columns].astype(int))
    b = np.repeat(columns, COHEN_1968[rows, columns].astype(int))
    assert weighted_kappa(a, b, [0, 1, 2], weights) == pytest.approx(
        cohen_kappa_score(a, b, weights=weights))
    rng = np.random.default_rng(5)
    first = rng.integers(1, 6, 80)
    second = np.clip(first + rng.integers(-1, 2, 80), 1, 5)
    assert weighted_kappa(first, second, [1, 2, 3, 4, 5], weights) == pytest.approx(
        cohen_kappa_score(first, second, weights=weights, labels=[1, 2, 3, 4, 5]))


def test_weighted_kappa_drops_missing_pairs_and_rejects_bad_input():
    assert weighted_kappa([1, 2, None, 3], [1, 2, 3, float("nan")], [1, 2, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not among the categories"):
        weighted_kappa([1, 7], [1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="zero diagonal"):
        weighted_kappa_from_confusion(COHEN_1968, np.ones((3, 3)))
    with pytest.raises(ValueError, match="weights must be"):
        weighted_kappa_from_confusion(COHEN_1968, "cubic")


def test_ordinal_krippendorff_alpha_is_available():
    """Ordinal agreement among many raters already exists: alpha at level 'ordinal', equal to
    the krippendorff package."""
    matrix = SHROUT_FLEISS.T
    data = study_of(SHROUT_FLEISS)
    ours = ag.krippendorff_alpha(data, ag.Bootstrap(0), "valence", "ordinal")["estimate"].iloc[0]
    assert ours == pytest.approx(ag.krippendorff_alpha_matrix(matrix, "ordinal"))


# --- ceiling by panel size ----------------------------------------------------------------------

def test_ceiling_of_the_full_panel_is_the_ceiling_table():
    ratings, predictions, stimuli, models = synthetic_study(40, 6, 1, seed=2)
    data = ag.StudyData.from_frames(ratings, predictions, stimuli, models)
    boot = ag.Bootstrap(40, seed=0)
    by_size = ceiling_by_panel_size(data, boot).set_index(["dimension", "panel_size"])
    ceiling = ag.human_ceiling(data, boot).set_index(["dimension", "metric"])
    for dimension in ("valence", "arousal"):
        full = by_size.loc[(dimension, 6)]
        expected = ceiling.loc[(dimension, "ccc")]
        assert [full["estimate"], full["ci_low"], full["ci_high"]] == pytest.approx(
            [expected["estimate"], expected["ci_low"], expected["ci_high"]])
        assert full["n_subsets"] == 1
    assert list(by_size.loc["valence"].index) == [2, 3, 5, 6]


def test_subsampled_ceiling_equals_a_loop_over_subsets_and_resamples():
    """Panels of 3 of 6 raters, drawn as documented; each subset's median leave-one-out CCC."""
    ratings, predictions, stimuli, models = synthetic_study(30, 6, 1, seed=4)
    data = ag.StudyData.from_frames(ratings, predictions, stimuli, models)
    row = ceiling_by_panel_size(data, ag.Bootstrap(30, seed=1), sizes=[3], n_subsets=4, seed=9
                                ).query("dimension == 'valence'").iloc[0]
    rng = np.random.default_rng(9)
    subsets = [rng.choice(6, 3, replace=False) for _ in range(4)]
    valence = data.valence

    def ceiling(subset, index):
        scores = []
        for r in subset:
            others = valence[[o for o in subset if o != r]][:, index].mean(axis=0)
            x = valence[r, index]
            scores.append(2 * np.mean((x - x.mean()) * (others - others.mean()))
                          / (x.var() + others.var() + (x.mean() - others.mean()) ** 2))
        return np.median(scores)

    everything = np.arange(data.n_items)
    assert row["estimate"] == pytest.approx(np.mean([ceiling(s, everything) for s in subsets]))
    draws = np.random.default_rng(1).integers(0, data.n_items, size=(30, data.n_items))
    loop = [np.mean([ceiling(s, index) for s in subsets]) for index in draws]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(np.quantile(loop, [0.025, 0.975]))
