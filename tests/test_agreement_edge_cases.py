"""Degenerate studies: every table gets a NaN with a note or an n that says why, never a crash,
a NumPy RuntimeWarning or a silently wrong number; bootstrap CIs against a naive loop."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from core import agreement as ag
from core.agreement.data import LABELS
from core.agreement.reliability import ALPHA_LEVELS, alpha_replicates
from core.agreement.report import build_report
from core.agreement.synthetic import synthetic_study

Frames = tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]


def rating(stimulus: int, rater: str, emotion: str | None, valence: float = np.nan,
           arousal: float = np.nan) -> dict:
    return {"stimulus": f"s{stimulus}", "stimulus_id": stimulus, "rater": rater, "batch_id": 1,
            "emotion": emotion, "valence": valence, "arousal": arousal}


def small() -> Frames:
    return synthetic_study(12, 3, 2, seed=1)


def lonely_rater() -> Frames:
    """A fourth rater with a single rating."""
    ratings, predictions, stimuli, models = small()
    extra = pd.DataFrame([{**rating(1, "lonely", "fear", 0.2, 0.1), "stimulus": "s00001.png"}])
    return pd.concat([ratings, extra], ignore_index=True), predictions, stimuli, models


def single_ratings() -> Frames:
    """Stimuli 1 and 2 have one rating each; only stimulus 3 has two."""
    ratings = pd.DataFrame([rating(1, "a", "fear", 0.1, 0.2), rating(2, "b", "anger", 0.3, 0.1),
                            rating(3, "a", "fear", 0.2, 0.2), rating(3, "b", "fear", 0.3, 0.1)])
    return ratings, None, None, None


def same_label() -> Frames:
    ratings, predictions, stimuli, models = small()
    return ratings.assign(emotion="fear"), predictions, stimuli, models


def model_gaps() -> Frames:
    """Models without valence/arousal on a third of the stimuli."""
    ratings, predictions, stimuli, models = small()
    predictions.loc[predictions.index[::3], ["valence", "arousal"]] = np.nan
    return ratings, predictions, stimuli, models


def contempt_majority() -> Frames:
    ratings, predictions, stimuli, models = small()
    ratings.loc[ratings["stimulus_id"].isin([1, 2, 3]), "emotion"] = "contempt"
    return ratings, predictions, stimuli, models


def labels_without_probabilities() -> Frames:
    ratings, predictions, stimuli, models = small()
    predictions[[c for c in predictions if c.startswith("p_")]] = np.nan
    return ratings, predictions, stimuli, None


def va_without_labels() -> Frames:
    """Imported predictions with valence/arousal only, models not described."""
    ratings, predictions, stimuli, _ = small()
    predictions["label"] = None
    predictions[[c for c in predictions if c.startswith("p_")]] = np.nan
    return ratings, predictions, stimuli, None


def one_group_and_a_group_of_one() -> Frames:
    ratings, predictions, stimuli, models = small()
    stimuli["site"] = "lab"
    stimuli["gender"] = "female"
    stimuli.loc[0, "gender"] = "male"
    return ratings, predictions, stimuli, models


def study_labels_only() -> Frames:
    ratings, predictions, stimuli, models = small()
    return ratings.assign(valence=np.nan, arousal=np.nan), predictions, stimuli, models


def study_va_only() -> Frames:
    ratings, predictions, stimuli, models = small()
    return ratings.assign(emotion=None), predictions, stimuli, models


def text_ids() -> Frames:
    ratings, predictions, stimuli, models = small()
    for frame in (ratings, predictions, stimuli):
        frame["stimulus_id"] = frame["stimulus_id"].astype(str)
    return ratings, predictions, stimuli, models


CASES: dict[str, Callable[[], Frames]] = {
    "lonely_rater": lonely_rater, "single_ratings": single_ratings, "same_label": same_label,
    "model_gaps": model_gaps, "contempt_majority": contempt_majority,
    "labels_without_probabilities": labels_without_probabilities,
    "va_without_labels": va_without_labels, "groups": one_group_and_a_group_of_one,
    "study_labels_only": study_labels_only, "study_va_only": study_va_only, "text_ids": text_ids,
}


def report(frames: Frames, n_boot: int = 5, **options) -> dict[str, pd.DataFrame]:
    return build_report(*frames, n_boot=n_boot, seed=0, **options)


@pytest.mark.parametrize("case", list(CASES))
def test_edge_case_builds_every_table_without_runtime_warnings(case):
    """One and five resamples: both draw resamples in which statistics are undefined; both
    tie policies."""
    frames = CASES[case]()
    subgroups = ["site", "gender"] if case == "groups" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report(frames, 1, subgroup_by=subgroups, ties="intended")
        tables = report(frames, 5, subgroup_by=subgroups)
    for name, table in tables.items():
        for column in ("estimate", "ci_low", "ci_high", "percentile"):
            if column in table:
                values = pd.to_numeric(table[column], errors="coerce")
                assert not np.isinf(values).any(), (name, column)
        if "metric" in table and "estimate" in table:
            bounded = table["metric"].isin(["ccc", "pearson_r", "cohen_kappa", "accuracy", "macro_f1"])
            assert table.loc[bounded, "estimate"].dropna().abs().le(1).all(), name


def test_rater_with_one_rating_has_no_ccc_and_is_left_out_of_the_ceiling():
    tables = report(lonely_rater(), n_boot=50)
    loo = tables["loo"].set_index(["rater", "dimension", "metric"])
    for dimension in ("valence", "arousal"):
        row = loo.loc[("lonely", dimension, "ccc")]
        assert row["n"] == 1 and np.isnan(row["estimate"]) and np.isnan(row["ci_low"])
    ceiling = tables["ceiling"].set_index(["dimension", "metric"])
    assert ceiling.at[("valence", "ccc"), "n"] == 3  # the three raters with a defined CCC
    assert ceiling.at[("valence", "ccc"), "human_min"] > 0
    rater = tables["model_as_rater"]
    assert (rater[rater["dimension"] == "valence"]["n_raters"] == 3).all()


def test_ccc_and_r_of_degenerate_pairs():
    """Lin's formula: a constant side gives CCC 0; both constant (one pair) leave it undefined."""
    assert np.isnan(ag.ccc([0.2], [0.5]))
    assert np.isnan(ag.ccc([0.2, 0.2], [0.5, 0.5]))
    assert ag.ccc([0.2, 0.2, 0.2], [0.1, 0.5, 0.3]) == 0
    assert np.isnan(ag.pearson([0.2, 0.2, 0.2], [0.1, 0.5, 0.3]))
    assert ag.pearson([1, 2, 3], [2, 4, 6.0000001]) <= 1


def test_single_ratings_are_not_pairable():
    tables = report(single_ratings())
    alpha = tables["alpha"].set_index("dimension")
    assert alpha.at["emotion", "n"] == 1 and alpha.at["emotion", "n_values"] == 2
    consensus = tables["consensus"].set_index("stimulus_id")
    assert np.isnan(consensus.at[1, "valence_sd"]) and consensus.at[3, "valence_sd"] > 0
    fleiss = tables["fleiss"].iloc[0]
    assert (fleiss["n"], fleiss["n_excluded"]) == (1, 2)


def test_one_label_for_everything_leaves_kappas_undefined():
    tables = report(same_label())
    fleiss = tables["fleiss"].set_index("category", drop=False)
    assert np.isnan(fleiss["estimate"].iloc[0])
    assert fleiss.loc[fleiss["metric"] == "category_kappa", "estimate"].isna().all()
    assert np.isnan(tables["alpha"].set_index("dimension").at["emotion", "estimate"])
    kappas = tables["loo"].query("metric == 'cohen_kappa'")
    assert kappas["estimate"].isna().all() and (kappas["n"] > 0).all()
    assert tables["consensus"]["majority_label"].eq("fear").all()


def test_label_nobody_used_has_undefined_category_kappa_and_recall():
    ratings, predictions, stimuli, models = small()
    ratings["emotion"] = ratings["emotion"].replace({"contempt": "anger"})
    tables = report((ratings, predictions, stimuli, models), n_boot=0)
    fleiss = tables["fleiss"].set_index("category")
    assert np.isnan(fleiss.at["contempt", "estimate"]) and fleiss["estimate"].notna().sum() == 8
    majority = set(tables["consensus"]["majority_label"].dropna())
    recall = tables["recall"].query("reference == 'human_majority' and scope == 'all'")
    never = recall[~recall["emotion"].isin(majority)]
    assert never["estimate"].isna().all() and (never["n"] == 0).all()


def test_model_valence_gaps_shrink_n_pairwise():
    tables = report(model_gaps(), n_boot=0)
    continuous = tables["model_continuous"]
    predictions = model_gaps()[1]
    expected = predictions.groupby("model_id")["valence"].count()
    for model, n in expected.items():
        rows = continuous[(continuous["model_id"] == model) & (continuous["dimension"] == "valence")]
        assert (rows["n"] == n).all() and rows["estimate"].notna().all()


def test_valence_arousal_only_predictions_say_they_have_no_labels():
    tables = report(va_without_labels(), n_boot=0)
    labels = tables["model_labels"]
    assert labels["estimate"].isna().all() and (labels["n"] == 0).all()
    assert labels["note"].str.contains("no emotion labels").all()
    assert not labels["note"].str.contains("cannot output").any()
    assert tables["recall"].query("pipeline != 'human'")["note"].str.contains("no emotion labels").all()
    rater = tables["model_as_rater"].query("dimension == 'emotion'")
    assert rater["note"].str.contains("no emotion labels").all()
    assert tables["notes"]["note"].str.contains("valence/arousal only").any()
    assert tables["model_continuous"]["estimate"].notna().all()
    assert (tables["models"]["n_predictions"] == 12).all()  # pages show models with n > 0


def test_one_group_has_no_gaps_and_a_group_of_one_stimulus_has_nan_ccc():
    frames = one_group_and_a_group_of_one()
    tables = report(frames, n_boot=20, subgroup_by=["site", "gender"])
    groups, gaps = tables["subgroups"], tables["subgroup_gaps"]
    assert set(groups.query("attribute == 'site'")["group"]) == {"lab"}
    assert gaps.query("attribute == 'site'").empty
    alone = groups.query("group == 'male' and metric == 'ccc'")
    assert alone["estimate"].isna().all() and (alone["n"] == 1).all() and (alone["n_stimuli"] == 1).all()
    assert "site" not in ag.subgroup_columns(ag.StudyData.from_frames(*frames))


def test_study_without_valence_arousal_or_without_labels():
    labels_only = report(study_labels_only())
    assert labels_only["icc"]["estimate"].isna().all()
    assert labels_only["icc"]["note"].str.contains("Krippendorff").all()
    assert (labels_only["model_continuous"]["n"] == 0).all()
    assert labels_only["model_continuous"]["estimate"].isna().all()
    assert labels_only["fleiss"]["estimate"].iloc[0] == labels_only["fleiss"]["estimate"].iloc[0]
    va_only = report(study_va_only())
    assert np.isnan(va_only["fleiss"]["estimate"].iloc[0]) and va_only["fleiss"]["n"].iloc[0] == 0
    majority = va_only["model_labels"].query("reference == 'human_majority'")
    assert majority["estimate"].isna().all() and (majority["n"] == 0).all()
    assert va_only["icc"]["estimate"].notna().all()


@pytest.mark.parametrize("n_boot", [0, 1])
def test_without_resamples_every_bootstrap_ci_is_nan_and_says_so(n_boot):
    tables = report(small(), n_boot=n_boot)
    for name, table in tables.items():
        if "ci_method" not in table:
            continue
        bootstrapped = table["ci_method"].ne("F distribution (exact)") & table["ci_method"].ne("")
        assert table.loc[bootstrapped, "ci_method"].eq(f"none (n_boot={n_boot})").all(), name
        assert table.loc[bootstrapped, ["ci_low", "ci_high"]].isna().all().all(), name
        if "percentile_ci_low" in table:
            assert table["percentile_ci_low"].isna().all()
    few = report(small(), n_boot=20)["model_continuous"]["ci_method"]
    assert few.str.contains("20 resamples: too few").all()


def test_text_ids_that_look_like_numbers_give_the_same_estimates():
    by_number = report(small(), n_boot=0)
    by_text = report(text_ids(), n_boot=0)
    for name in ("model_continuous", "model_labels", "fleiss", "alpha", "icc", "loo"):
        assert by_text[name]["estimate"].to_numpy() == pytest.approx(
            by_number[name]["estimate"].to_numpy(), nan_ok=True), name
    ratings, predictions, stimuli, models = text_ids()
    stimuli["stimulus_id"] = stimuli["stimulus_id"].astype(int)
    with pytest.raises(ValueError, match=r"stimulus_id mixes numbers and text .*stimuli: number"):
        report((ratings, predictions, stimuli, models))


# --- bootstrap --------------------------------------------------------------------------------

def resample_indices(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """The draws ``Bootstrap`` makes (documented: one integers() call from the seed)."""
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def test_vectorised_bootstrap_equals_a_naive_loop_over_resamples():
    ratings, predictions, stimuli, models = synthetic_study(30, 5, 1, seed=6)
    tables = report((ratings, predictions, stimuli, models), n_boot=50)
    stimulus_ids = np.sort(stimuli["stimulus_id"].to_numpy())
    votes = ratings.groupby(["stimulus_id", "emotion"]).size().unstack(fill_value=0)
    votes = votes.reindex(index=stimulus_ids, columns=list(LABELS), fill_value=0).to_numpy()
    majority = tables["consensus"].set_index("stimulus_id").loc[stimulus_ids, "majority_label"]
    guess = predictions.set_index("stimulus_id").loc[stimulus_ids, "label"]
    kappas, f1s = [], []
    for index in resample_indices(len(stimulus_ids), 50, seed=0):
        kappas.append(statsmodels_fleiss(votes[index]))
        truth, predicted = majority.to_numpy()[index], guess.to_numpy()[index]
        keep = pd.notna(truth)
        f1s.append(f1_score(truth[keep].astype(str), predicted[keep].astype(str), average="macro"))
    fleiss = tables["fleiss"].iloc[0]
    assert [fleiss["ci_low"], fleiss["ci_high"]] == pytest.approx(np.quantile(kappas, [0.025, 0.975]))
    f1 = tables["model_labels"].query(
        "reference == 'human_majority' and scope == 'all' and metric == 'macro_f1'").iloc[0]
    assert [f1["ci_low"], f1["ci_high"]] == pytest.approx(np.quantile(f1s, [0.025, 0.975]))


def test_seed_reproduces_every_table_and_another_seed_moves_the_cis():
    frames = synthetic_study(30, 4, 2, seed=7)
    first, second = report(frames, n_boot=40), report(frames, n_boot=40)
    other = build_report(*frames, n_boot=40, seed=1)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])
    assert not np.allclose(first["model_continuous"]["ci_low"], other["model_continuous"]["ci_low"])
    assert first["model_continuous"]["estimate"].equals(other["model_continuous"]["estimate"])


def test_percentile_cis_contain_the_estimate_on_typical_data():
    tables = report(synthetic_study(80, 6, 2, seed=9, missing_share=0.1), n_boot=200)
    for name, table in tables.items():
        if {"estimate", "ci_low", "ci_high"} <= set(table) and len(table):
            has_ci = table[table["ci_low"].notna()]
            inside = has_ci["ci_low"].le(has_ci["estimate"] + 1e-12) & has_ci["ci_high"].ge(has_ci["estimate"] - 1e-12)
            assert inside.mean() >= 0.98, (name, has_ci[~inside].head())


def test_small_subgroup_resamples_stay_in_range():
    """Resamples that draw one stimulus of a two-stimulus group have no r (not +-inf)."""
    ratings, predictions, stimuli, models = small()
    stimuli["pair"] = np.where(stimuli["stimulus_id"] <= 2, "two", "rest")
    groups = report((ratings, predictions, stimuli, models), n_boot=200, subgroup_by=["pair"])["subgroups"]
    two = groups.query("group == 'two' and metric in ['pearson_r', 'ccc']")
    assert two[["ci_low", "ci_high"]].abs().le(1 + 1e-12).all().all()


def test_alpha_resamples_without_any_spread_are_undefined_at_every_level():
    """Resamples drawing only stimulus 1 or only stimulus 2 (raters agree on both) have no
    expected disagreement: NaN at every level, never 1 - round-off / round-off."""
    matrix = np.array([[0.37, -0.61, 0.1], [0.37, -0.61, 0.1], [0.37, -0.61, 0.3]])
    first_two = np.array([True, True, False])
    nan_patterns = {
        level: np.isnan(alpha_replicates(matrix, level, ag.Bootstrap(60, seed=1), first_two)[1])
        for level in ALPHA_LEVELS
    }
    assert 0 < nan_patterns["nominal"].sum() < 60
    for level, pattern in nan_patterns.items():
        assert (pattern == nan_patterns["nominal"]).all(), level
