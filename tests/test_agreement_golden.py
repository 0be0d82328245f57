"""Golden values from the literature (listed in shared/AGREEMENT.md) for every wrapped statistic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy.spatial.distance import jensenshannon
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from core import agreement as ag
from core.agreement.categorical import agreement_contributions, agreement_statistics, kappa_from_confusion
from core.agreement.reliability import alpha_replicates, krippendorff_alpha_matrix

NO_BOOT = ag.Bootstrap(n_boot=0)

SHROUT_FLEISS = np.array([
    [9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7],
], dtype=float)

FLEISS_1971 = """
4 4 4 4 4 4 | 2 2 2 5 5 5 | 2 3 3 3 3 5 | 5 5 5 5 5 5 | 2 2 2 4 4 4 | 1 1 3 3 3 3
3 3 3 3 5 5 | 1 1 3 3 3 4 | 1 1 4 4 4 4 | 5 5 5 5 5 5 | 1 4 4 4 4 4 | 1 2 4 4 4 4
2 2 2 3 3 3 | 1 4 4 4 4 4 | 2 2 4 4 4 5 | 3 3 3 3 3 5 | 1 1 1 4 5 5 | 1 1 1 1 1 2
2 2 4 4 4 4 | 1 3 3 5 5 5 | 5 5 5 5 5 5 | 2 4 4 4 4 4 | 2 2 4 5 5 5 | 1 1 4 4 4 4
1 4 4 4 4 5 | 2 2 2 2 2 4 | 1 1 1 1 5 5 | 2 2 4 4 4 4 | 1 3 3 3 3 3 | 5 5 5 5 5 5
"""

NAN = np.nan
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])


def fleiss_patients() -> np.ndarray:
    """30 patients x 6 psychiatrists, categories 1..5, in the order published."""
    rows = []
    for line in FLEISS_1971.strip().splitlines():
        rows += [[int(v) for v in block.split()] for block in line.split("|")]
    return np.array(rows)


def long_ratings(matrix: np.ndarray, column: str, labels: list[str] | None = None) -> pd.DataFrame:
    """A ratings frame (db.analysis contract) from a raters x items matrix (NaN = missing)."""
    records = []
    for rater, row in enumerate(matrix):
        for item, value in enumerate(row):
            if value == value:
                records.append({"stimulus": f"s{item}", "stimulus_id": item, "rater": f"r{rater}",
                                "batch_id": 1, "emotion": None, "valence": np.nan,
                                "arousal": np.nan})
                records[-1][column] = labels[int(value) - 1] if labels else float(value)
    return pd.DataFrame(records)


def test_icc_shrout_fleiss_1979():
    """Shrout & Fleiss (1979) Table 2 data, 6 targets x 4 judges: ICC(1,1) .17, ICC(2,1) .29,
    ICC(3,1) .71, ICC(1,k) .44, ICC(2,k) .62, ICC(3,k) .91 (published to 2 decimals; exact
    values from the ANOVA); F(5, 18) = 1.794678 for ICC(1,.), F(5, 15) = 11.027248 for
    ICC(2,.)/ICC(3,.); 95% CI ICC(2,1) [0.01879, 0.76108], ICC(3,1) [0.34246, 0.94586]."""
    table = ag.icc_matrix(SHROUT_FLEISS).set_index("shrout_fleiss")
    expected = {"ICC(1,1)": 0.1657417684, "ICC(2,1)": 0.2897637795, "ICC(3,1)": 0.7148407148,
                "ICC(1,k)": 0.4427971337, "ICC(2,k)": 0.6200505476, "ICC(3,k)": 0.9093155424}
    for form, value in expected.items():
        assert table.at[form, "estimate"] == pytest.approx(value, abs=1e-9)
    assert table.at["ICC(1,1)", "F"] == pytest.approx(1.794678, abs=1e-6)
    assert (table.at["ICC(1,1)", "df1"], table.at["ICC(1,1)", "df2"]) == (5, 18)
    assert table.at["ICC(2,1)", "F"] == pytest.approx(11.027248, abs=1e-6)
    assert (table.at["ICC(3,1)", "df1"], table.at["ICC(3,1)", "df2"]) == (5, 15)
    assert table.at["ICC(2,1)", "ci_low"] == pytest.approx(0.01879, abs=5e-6)
    assert table.at["ICC(2,1)", "ci_high"] == pytest.approx(0.76108, abs=5e-6)
    assert table.at["ICC(3,1)", "ci_low"] == pytest.approx(0.34246, abs=5e-6)
    assert table.at["ICC(3,1)", "ci_high"] == pytest.approx(0.94586, abs=5e-6)


def test_icc_names_both_conventions():
    """pingouin 0.7 names rows ICC(A,1); Shrout-Fleiss ICC(2,1); pingouin < 0.6 ICC2."""
    table = ag.icc_matrix(SHROUT_FLEISS)
    row = table[table["form"] == "ICC(A,1)"].iloc[0]
    assert (row["shrout_fleiss"], row["pingouin_legacy"]) == ("ICC(2,1)", "ICC2")
    assert "ICC(A,1)" in row["label"] and "ICC(2,1)" in row["label"]


def test_icc_matches_pingouin_on_same_data():
    """Our ICC table reproduces pingouin.intraclass_corr (the library the forms come from):
    estimates, F, df and p exactly; its CI, rounded by pingouin to 2 decimals, to 0.005."""
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(25, 1)) + rng.normal(0, 0.8, size=(25, 5)) + np.arange(5) * 0.2
    long = pd.DataFrame({"t": np.repeat(np.arange(25), 5), "r": np.tile(np.arange(5), 25),
                         "x": matrix.ravel()})
    theirs = pingouin.intraclass_corr(long, "t", "r", "x").set_index("Type")
    ours = ag.icc_matrix(matrix).set_index("form")
    for form in theirs.index:
        assert ours.at[form, "estimate"] == pytest.approx(theirs.at[form, "ICC"], abs=1e-3)
        assert ours.at[form, "F"] == pytest.approx(theirs.at[form, "F"], rel=1e-3)
        assert ours.at[form, "df2"] == pytest.approx(theirs.at[form, "df2"])
        low, high = theirs.at[form, "CI95"]
        assert ours.at[form, "ci_low"] == pytest.approx(low, abs=0.0051)
        assert ours.at[form, "ci_high"] == pytest.approx(high, abs=0.0051)


def test_icc_from_long_ratings_drops_incomplete_stimuli():
    """Through the ratings frame: one missing cell drops that stimulus (listwise), counted."""
    matrix = SHROUT_FLEISS.T.copy()
    with_gap = np.column_stack([matrix, [1.0, np.nan, 3.0, 4.0]])
    data = ag.StudyData.from_frames(long_ratings(with_gap, "valence"))
    table = ag.icc(data, "valence").set_index("shrout_fleiss")
    assert table.at["ICC(2,1)", "estimate"] == pytest.approx(0.2897637795, abs=1e-9)
    assert table.at["ICC(2,1)", "n"] == 6 and table.at["ICC(2,1)", "n_dropped"] == 1


def test_fleiss_1971_kappa_and_category_kappas():
    """Fleiss (1971), 30 patients x 6 psychiatrists, 5 categories: kappa 0.4302445 (published
    .430); category kappas 0.2448, 0.2448, 0.5200, 0.4711, 0.5661; statsmodels agrees."""
    patients = fleiss_patients()
    counts = np.stack([(patients == c).sum(axis=1) for c in range(1, 6)], axis=1)
    kappa, categories = ag.fleiss_kappa_counts(counts)
    assert kappa == pytest.approx(0.4302445, abs=1e-7)
    assert kappa == pytest.approx(statsmodels_fleiss(counts), abs=1e-12)
    assert categories == pytest.approx([0.2448, 0.2448, 0.5200, 0.4711, 0.5661], abs=5e-5)


def test_fleiss_1971_through_ratings_frame():
    """The same data as long ratings with canonical labels gives the same table values."""
    labels = ["neutral", "happiness", "sadness", "surprise", "fear"]
    data = ag.StudyData.from_frames(long_ratings(fleiss_patients().T.astype(float), "emotion", labels))
    table = ag.fleiss_kappa(data, NO_BOOT)
    overall = table[table["metric"] == "fleiss_kappa"].iloc[0]
    assert overall["estimate"] == pytest.approx(0.4302445, abs=1e-7)
    assert (overall["n"], overall["raters_per_stimulus"]) == (30, "6")
    per_category = table.set_index("category")["estimate"]
    assert per_category["sadness"] == pytest.approx(0.5200, abs=5e-5)
    assert np.isnan(per_category["contempt"])  # never used: undefined, not zero


@pytest.mark.parametrize("level, expected", [
    ("nominal", 0.743421), ("ordinal", 0.815388), ("interval", 0.849107), ("ratio", 0.797403),
])
def test_krippendorff_2011(level, expected):
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 observers x 12
    units with missing values: nominal 0.743421 (=113/152), ordinal 0.815388, interval
    0.849107 (=951/1120), ratio 0.797403. Our additive forms and the krippendorff package."""
    ours = alpha_replicates(KRIPPENDORFF_2011, level, NO_BOOT)
    assert float(ours[0]) == pytest.approx(expected, abs=1e-6)
    assert (ours[2], ours[3]) == (11, 40)  # pairable units and values (n = 40 in the paper)
    assert krippendorff_alpha_matrix(KRIPPENDORFF_2011, level) == pytest.approx(expected, abs=1e-6)


def test_krippendorff_nominal_exact_fraction():
    assert float(alpha_replicates(KRIPPENDORFF_2011, "nominal", NO_BOOT)[0]) == pytest.approx(113 / 152, abs=1e-12)
    assert float(alpha_replicates(KRIPPENDORFF_2011, "interval", NO_BOOT)[0]) == pytest.approx(951 / 1120, abs=1e-12)


def test_krippendorff_level_must_be_named():
    with pytest.raises(ValueError, match="level must be one of"):
        krippendorff_alpha_matrix(KRIPPENDORFF_2011, "numeric")


def _confusion_labels(table: list[list[int]]) -> tuple[list[str], list[str]]:
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [f"c{i}"] * count
            b += [f"c{j}"] * count
    return a, b


@pytest.mark.parametrize("table, expected", [
    ([[20, 5], [10, 15]], 0.40),  # Cohen (1960)-style 2x2: both yes 20, A yes/B no 5, ...
    ([[20, 20], [10, 50]], 0.3478261),  # Artstein & Poesio (2008)
])
def test_cohen_kappa(table, expected):
    """Cohen's kappa: 2x2 counts (20, 5, 10, 15) give 0.40; Artstein & Poesio (2008)
    [[20, 20], [10, 50]] give 0.3478261. Same by sklearn wrapper, confusion and marginals."""
    a, b = _confusion_labels(table)
    assert ag.cohen_kappa(a, b, labels=["c0", "c1"]) == pytest.approx(expected, abs=1e-7)
    assert float(kappa_from_confusion(np.array(table, float))) == pytest.approx(expected, abs=1e-7)
    codes_a = np.array([int(x[1]) for x in a])
    codes_b = np.array([int(x[1]) for x in b])
    sums = agreement_contributions(codes_a, codes_b, 2).sum(axis=0)
    assert float(agreement_statistics(sums, 2)["cohen_kappa"]) == pytest.approx(expected, abs=1e-7)


def test_ccc_by_hand():
    """Lin's CCC by hand: x = 1..5 with y = x + 1 gives 0.8 (population moments: 2*2/(2+2+1)),
    reversed x gives -1, y = x gives 1."""
    x = np.arange(1, 6, dtype=float)
    assert ag.ccc(x, x + 1) == pytest.approx(0.8, abs=1e-12)
    assert ag.ccc(x, x[::-1]) == pytest.approx(-1.0, abs=1e-12)
    assert ag.ccc(x, x) == pytest.approx(1.0, abs=1e-12)


def test_jensen_shannon_matches_scipy():
    """Our vectorised JSD (base 2) equals scipy's Jensen-Shannon distance squared."""
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    q = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    expected = [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)]
    assert ag.jensen_shannon(p, q) == pytest.approx(expected, abs=1e-12)
    assert ag.jensen_shannon(p, q)[2] == pytest.approx(1.0)
