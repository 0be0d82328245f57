"""Agreement engine: each metric against a direct computation, missing data, 7-class models."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, recall_score

from core import agreement as ag
from core.agreement.bootstrap import percentile_interval
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import LABELS
from core.agreement.rater import percentile_of
from core.agreement.reliability import ALPHA_LEVELS, alpha_replicates, others_mean
from core.agreement.report import TABLES, build_report
from core.agreement.synthetic import synthetic_study

NO_BOOT = ag.Bootstrap(n_boot=0)


def rating(stimulus: int, rater: str, emotion: str | None, valence: float = np.nan,
           arousal: float = np.nan, batch: int = 1) -> dict:
    return {"stimulus": f"s{stimulus}", "stimulus_id": stimulus, "rater": rater, "batch_id": batch,
            "emotion": emotion, "valence": valence, "arousal": arousal}


def prediction(stimulus: int, model: str, label: str, probs: dict[str, float] | None = None,
               valence: float = np.nan, arousal: float = np.nan) -> dict:
    row = {"stimulus": f"s{stimulus}", "stimulus_id": stimulus, "model_id": model, "label": label,
           "valence": valence, "arousal": arousal}
    row.update({f"p_{k}": np.nan for k in LABELS})
    for label_name, p in (probs or {}).items():
        row[f"p_{label_name}"] = p
    return row


@pytest.fixture(scope="module")
def study() -> ag.StudyData:
    return ag.StudyData.from_frames(*synthetic_study(80, 7, 3, seed=11))


# --- consensus ------------------------------------------------------------------------------

def test_majority_tie_is_flagged_never_broken_by_label_order():
    ratings = pd.DataFrame([
        rating(1, "a", "anger", 0.5), rating(1, "b", "disgust", -0.5),
        rating(2, "a", "fear"), rating(2, "b", "fear"), rating(2, "c", "anger"),
    ])
    stimuli = pd.DataFrame({"stimulus": ["s1", "s2"], "stimulus_id": [1, 2],
                            "intended_emotion": ["disgust", None]})
    data = ag.StudyData.from_frames(ratings, stimuli=stimuli)
    plain = ag.human_consensus(data).set_index("stimulus_id")
    assert pd.isna(plain.at[1, "majority_label"]) and plain.at[1, "is_tie"]
    assert plain.at[1, "tied_labels"] == "disgust|anger"
    assert plain.at[2, "majority_label"] == "fear"
    assert plain.at[2, "majority_share"] == pytest.approx(2 / 3)
    assert plain.at[1, "share_anger"] == 0.5 and plain.at[2, "share_neutral"] == 0
    assert plain.at[1, "valence_mean"] == 0 and plain.at[1, "valence_sd"] == pytest.approx(np.sqrt(0.5))
    resolved = ag.human_consensus(data, ties="intended").set_index("stimulus_id")
    assert resolved.at[1, "majority_label"] == "disgust"
    assert resolved.at[1, "tie_resolved_by"] == "intended"
    with pytest.raises(ValueError, match="ties must be one of"):
        ag.human_consensus(data, ties="first")


def test_duplicate_ratings_keep_newest_batch_and_say_so():
    ratings = pd.DataFrame([rating(1, "a", "fear", 0.1, batch=1), rating(1, "a", "anger", 0.9, batch=2),
                            rating(1, "b", "anger", 0.8)])
    data = ag.StudyData.from_frames(ratings)
    assert data.valence[list(data.raters).index("a"), 0] == 0.9
    assert any("1 rater x stimulus pairs rated more than once (2 ratings) resolved by keeping "
               "the newest" in note for note in data.notes)


def test_unknown_label_names_the_column_and_fix():
    ratings = pd.DataFrame([rating(1, "a", "Happy")])
    with pytest.raises(ValueError, match=r"ratings column 'emotion'.*'Happy'.*to_canonical"):
        ag.StudyData.from_frames(ratings)


def test_missing_contract_column_is_reported():
    with pytest.raises(ValueError, match=r"ratings lacks columns \['arousal'\]"):
        ag.StudyData.from_frames(pd.DataFrame([rating(1, "a", "fear")]).drop(columns="arousal"))


# --- bootstrap ------------------------------------------------------------------------------

def test_bootstrap_replicates_equal_explicit_resamples():
    """The weight-matrix product equals recomputing CCC on explicitly resampled stimuli."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(0, 0.5, 60)
    boot = ag.Bootstrap(n_boot=25, seed=9)
    _, reps = boot.evaluate(paired_moments(x, y), moment_statistics)
    index = np.random.default_rng(9).integers(0, 60, size=(25, 60))
    explicit = [ag.ccc(x[i], y[i]) for i in index]
    assert reps["ccc"] == pytest.approx(explicit, abs=1e-5)  # float32 products


def test_percentile_interval_matches_numpy_and_ignores_nan():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(200, 3))
    values[:20, 1] = np.nan
    values[:, 2] = np.nan
    low, high = percentile_interval(values, 0.9)
    assert low[:2] == pytest.approx(np.nanquantile(values[:, :2], 0.05, axis=0))
    assert high[:2] == pytest.approx(np.nanquantile(values[:, :2], 0.95, axis=0))
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_same_seed_same_intervals(study):
    first = ag.model_vs_human_continuous(study, ag.Bootstrap(50, seed=4))
    second = ag.model_vs_human_continuous(study, ag.Bootstrap(50, seed=4))
    other = ag.model_vs_human_continuous(study, ag.Bootstrap(50, seed=5))
    pd.testing.assert_frame_equal(first, second)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    assert first["estimate"].tolist() == other["estimate"].tolist()


# --- model vs human -------------------------------------------------------------------------

def test_continuous_metrics_match_direct_computation(study):
    table = ag.model_vs_human_continuous(study, NO_BOOT)
    human = np.nanmean(study.valence, axis=0)
    model = study.model_valence[1]
    rows = table[(table["model_id"] == "model_1") & (table["dimension"] == "valence")].set_index("metric")
    assert rows.at["pearson_r", "estimate"] == pytest.approx(np.corrcoef(model, human)[0, 1])
    assert rows.at["rmse", "estimate"] == pytest.approx(np.sqrt(np.mean((model - human) ** 2)))
    assert rows.at["mae", "estimate"] == pytest.approx(np.mean(np.abs(model - human)))
    ccc = 2 * np.cov(model, human, ddof=0)[0, 1] / (model.var() + human.var() + (model.mean() - human.mean()) ** 2)
    assert rows.at["ccc", "estimate"] == pytest.approx(ccc)
    assert rows.at["ccc", "n"] == study.n_items


def test_label_metrics_match_sklearn(study):
    table = ag.model_vs_human_labels(study, NO_BOOT)
    majority = ag.human_consensus(study)["majority_label"].to_numpy()
    predicted = np.array(LABELS, dtype=object)[study.model_labels[0]]
    keep = ~pd.isna(majority)
    truth, guess = majority[keep].astype(str), predicted[keep].astype(str)
    rows = table[(table["model_id"] == "model_0") & (table["reference"] == "human_majority")
                 & (table["scope"] == "all")].set_index("metric")
    assert rows.at["accuracy", "estimate"] == pytest.approx(np.mean(truth == guess))
    assert rows.at["cohen_kappa", "estimate"] == pytest.approx(cohen_kappa_score(truth, guess))
    assert rows.at["macro_f1", "estimate"] == pytest.approx(f1_score(truth, guess, average="macro"))
    assert rows.at["accuracy", "n_excluded"] == (~keep).sum()
    recall = ag.per_emotion_recall(study, NO_BOOT)
    recall = recall[(recall["model_id"] == "model_0") & (recall["reference"] == "human_majority")
                    & (recall["scope"] == "all")].set_index("emotion")
    labels = sorted(set(truth))
    expected = recall_score(truth, guess, labels=labels, average=None)
    assert recall.loc[labels, "estimate"].to_numpy() == pytest.approx(expected)


def seven_class_case() -> ag.StudyData:
    """Three stimuli: humans say contempt, happiness, neutral; a 7-class model and an 8-class."""
    ratings = pd.DataFrame([
        rating(1, "a", "contempt"), rating(1, "b", "contempt"), rating(1, "c", "anger"),
        rating(2, "a", "happiness"), rating(2, "b", "happiness"), rating(2, "c", "happiness"),
        rating(3, "a", "neutral"), rating(3, "b", "neutral"), rating(3, "c", "sadness"),
    ])
    seven = {"happiness": 0.1, "neutral": 0.1, "anger": 0.5, "sadness": 0.1, "fear": 0.1,
             "disgust": 0.05, "surprise": 0.05}
    eight = {**{k: 0.0 for k in seven}, "contempt": 1.0}
    predictions = pd.DataFrame(
        [prediction(1, "seven", "anger", seven), prediction(2, "seven", "happiness", {**seven, "happiness": 0.5, "anger": 0.1}),
         prediction(3, "seven", "neutral", {**seven, "neutral": 0.5, "anger": 0.1}),
         prediction(1, "eight", "contempt", eight), prediction(2, "eight", "happiness", eight),
         prediction(3, "eight", "sadness", eight)])
    models = pd.DataFrame({"model_id": ["seven", "eight"], "name": ["Seven", "Eight"],
                           "pipeline": ["C", "A"],
                           "labels": [list(seven), list(eight)], "source": "test"})
    return ag.StudyData.from_frames(ratings, predictions, None, models)


def test_seven_class_model_is_scored_in_both_scopes_with_a_note():
    data = seven_class_case()
    table = ag.model_vs_human_labels(data, NO_BOOT)
    seven = table[table["model_id"] == "seven"].set_index(["scope", "metric"])
    assert seven.loc[("all", "accuracy"), "estimate"] == pytest.approx(2 / 3)
    assert seven.loc[("all", "accuracy"), "n"] == 3
    assert "1 stimuli have a reference label the model cannot output (contempt)" in seven.loc[("all", "accuracy"), "note"]
    assert seven.loc[("outputtable", "accuracy"), "estimate"] == 1.0
    assert seven.loc[("outputtable", "accuracy"), "n"] == 2
    assert seven.loc[("outputtable", "accuracy"), "n_excluded"] == 1
    # probability on the reference: 0 for the contempt stimulus in scope "all"
    assert seven.loc[("all", "mean_p_reference"), "estimate"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert seven.loc[("outputtable", "mean_p_reference"), "estimate"] == pytest.approx(0.5)
    eight = table[table["model_id"] == "eight"].set_index(["scope", "metric"])
    assert eight.loc[("all", "accuracy"), "estimate"] == eight.loc[("outputtable", "accuracy"), "estimate"]
    assert "scopes coincide" in eight.loc[("outputtable", "accuracy"), "note"]
    recall = ag.per_emotion_recall(data, NO_BOOT)
    contempt = recall[(recall["model_id"] == "seven") & (recall["emotion"] == "contempt")]
    assert contempt["scope"].tolist() == ["all"] and contempt["estimate"].iloc[0] == 0
    assert "cannot output" in contempt["note"].iloc[0]


def test_jsd_renormalises_over_the_models_labels_only_in_scope_outputtable():
    data = seven_class_case()
    table = ag.model_vs_human_labels(data, NO_BOOT)
    seven = table[(table["model_id"] == "seven") & (table["metric"] == "jsd")].set_index("scope")
    labels = list(LABELS)
    human = np.zeros(8)
    human[labels.index("contempt")], human[labels.index("anger")] = 2 / 3, 1 / 3
    model = np.array([data.model_probs[0, 0, k] if np.isfinite(data.model_probs[0, 0, k]) else 0 for k in range(8)])
    own = data.can_output[0]
    first_all = ag.jensen_shannon(human, model)
    first_own = ag.jensen_shannon(human * own, model * own)  # all human mass on anger
    rest = [ag.jensen_shannon(np.nan_to_num(data.vote_counts()[i] / 3), np.nan_to_num(data.model_probs[0, i])) for i in (1, 2)]
    assert seven.at["all", "estimate"] == pytest.approx((first_all + sum(rest)) / 3)
    assert seven.at["outputtable", "estimate"] == pytest.approx((first_own + sum(rest)) / 3)


def test_human_majority_vs_intended_and_no_intended(study):
    tables = build_report(*synthetic_study(60, 5, 1, seed=2), n_boot=0)
    humans = tables["human_vs_intended"]
    assert set(humans["model_id"]) == {"human_majority"} and "jsd" not in set(humans["metric"])
    assert (tables["recall"]["pipeline"] == "human").any()


# --- reliability ----------------------------------------------------------------------------

def test_alpha_all_levels_match_krippendorff_package():
    rng = np.random.default_rng(4)
    matrix = rng.integers(1, 6, size=(5, 40)).astype(float)
    matrix[rng.random(matrix.shape) < 0.25] = np.nan
    for level in ALPHA_LEVELS:
        ours = float(alpha_replicates(matrix, level, NO_BOOT)[0])
        assert ours == pytest.approx(krippendorff.alpha(matrix, level_of_measurement=level), abs=1e-9)


def test_interval_alpha_on_continuous_values_matches_package():
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(1, 30)) + rng.normal(0, 0.5, size=(4, 30))
    matrix[0, :5] = np.nan
    ours = float(alpha_replicates(matrix, "interval", NO_BOOT)[0])
    assert ours == pytest.approx(krippendorff.alpha(matrix, level_of_measurement="interval"), abs=1e-9)


def test_fleiss_unequal_rater_counts_policies():
    ratings = pd.DataFrame(
        [rating(i, r, "fear" if i % 2 else "anger") for i in range(6) for r in "abc"]
        + [rating(6, "a", "fear"), rating(6, "b", "anger")]
    )
    data = ag.StudyData.from_frames(ratings)
    modal = ag.fleiss_kappa(data, NO_BOOT, unequal="modal").iloc[0]
    assert (modal["n"], modal["n_excluded"], modal["raters_per_stimulus"]) == (6, 1, "3")
    assert modal["estimate"] == pytest.approx(1.0)
    everything = ag.fleiss_kappa(data, NO_BOOT, unequal="all").iloc[0]
    assert (everything["n"], everything["raters_per_stimulus"]) == (7, "2-3")
    assert everything["estimate"] < 1
    with pytest.raises(ValueError, match="unequal must be one of"):
        ag.fleiss_kappa(data, NO_BOOT, unequal="drop")


def test_icc_without_a_complete_block_says_why():
    ratings = pd.DataFrame([rating(1, "a", None, 0.1), rating(1, "b", None, 0.2),
                            rating(2, "a", None, 0.3), rating(3, "b", None, 0.5)])
    table = ag.icc(ag.StudyData.from_frames(ratings), "valence")
    assert table["estimate"].isna().all() and table["n"].eq(1).all()
    assert "Krippendorff" in table["note"].iloc[0] and table["n_dropped"].iloc[0] == 2


def test_leave_one_rater_out_matches_brute_force(study):
    table = ag.leave_one_rater_out(study, NO_BOOT).set_index(["rater", "dimension", "metric"])
    rater = 2
    others = np.delete(study.arousal, rater, axis=0).mean(axis=0)
    assert table.loc[(study.raters[rater], "arousal", "ccc"), "estimate"] == pytest.approx(
        ag.ccc(study.arousal[rater], others))
    assert others_mean(study.arousal)[rater] == pytest.approx(others)
    counts = np.delete(study.labels, rater, axis=0)
    votes = np.stack([(counts == k).sum(axis=0) for k in range(8)], axis=1)
    top = votes.max(axis=1)
    untied = (votes == top[:, None]).sum(axis=1) == 1
    majority = votes.argmax(axis=1)
    own = study.labels[rater]
    expected = cohen_kappa_score(own[untied], majority[untied])
    row = table.loc[(study.raters[rater], "emotion", "cohen_kappa")]
    assert row["estimate"] == pytest.approx(expected) and row["n"] == untied.sum()


def test_percentile_of_counts_ties_half():
    humans = np.array([0.1, 0.2, 0.3, 0.3, np.nan])
    assert percentile_of(np.array(0.3), humans) == pytest.approx(100 * (2 + 1) / 4)
    assert percentile_of(np.array(0.05), humans) == 0
    assert np.isnan(percentile_of(np.array(np.nan), humans))


def test_model_as_rater_and_panel(study):
    boot = ag.Bootstrap(60, seed=1)
    table = ag.model_as_rater(study, boot)
    assert set(table["dimension"]) == {"valence", "arousal", "emotion"}
    assert table["percentile"].between(0, 100).all()
    assert (table["percentile_ci_low"] <= table["percentile_ci_high"]).all()
    assert (table["human_min"] <= table["human_median"]).all()
    seven = table[(table["model_id"] == "model_1") & (table["dimension"] == "emotion")]
    assert "cannot output (contempt)" in seven["note"].iloc[0]
    panel = ag.panel_reliability(study, boot)
    for _, rows in panel.groupby(["model_id", "dimension", "metric"]):
        rows = rows.set_index("panel")
        assert rows.at["change", "estimate"] == pytest.approx(
            rows.at["humans + model", "estimate"] - rows.at["humans", "estimate"])
    icc_rows = panel[(panel["metric"] == "icc") & (panel["panel"] == "humans")]
    direct = ag.icc(study, "valence").set_index("form").at["ICC(A,1)", "estimate"]
    assert icc_rows[icc_rows["dimension"] == "valence"]["estimate"].iloc[0] == pytest.approx(direct)


def test_model_vs_model_is_symmetric_with_unit_diagonal(study):
    table = ag.model_vs_model(study, ag.Bootstrap(30, seed=0))
    ccc = table[table["dimension"] == "valence"].pivot(index="model_a", columns="model_b", values="estimate")
    assert np.allclose(ccc.to_numpy(), ccc.to_numpy().T)
    assert np.allclose(np.diag(ccc.to_numpy()), 1.0)
    assert "human_consensus" in ccc.index
    kappa = table[table["metric"] == "cohen_kappa"].set_index(["model_a", "model_b"])
    expected = cohen_kappa_score(study.model_labels[0], study.model_labels[2])
    assert kappa.at[("model_0", "model_2"), "estimate"] == pytest.approx(expected)
    assert kappa.at[("model_0", "model_2"), "same_pipeline"] == False  # noqa: E712


def test_subgroups_and_gaps(study):
    groups, gaps = ag.subgroup_agreement(study, ag.Bootstrap(40, seed=2), "gender")
    assert set(groups["group"]) == {"female", "male"}
    keyed = groups.set_index(["group", "model_id", "dimension", "metric"])["estimate"]
    row = gaps[(gaps["model_id"] == "model_0") & (gaps["metric"] == "ccc") & (gaps["dimension"] == "arousal")].iloc[0]
    assert row["estimate"] == pytest.approx(keyed[("female", "model_0", "arousal", "ccc")]
                                            - keyed[("male", "model_0", "arousal", "ccc")])
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    humans = groups[groups["model_id"] == "humans"]
    assert set(humans["metric"]) == {"krippendorff_alpha_nominal", "krippendorff_alpha_interval"}
    with pytest.raises(ValueError, match="no stimulus attribute 'age'"):
        ag.subgroup_agreement(study, NO_BOOT, "age")
    assert ag.subgroup_columns(study) == ["gender", "set"]


def test_build_report_with_ratings_only_and_progress():
    ratings, _, stimuli, _ = synthetic_study(30, 4, 0, seed=3)
    calls = []
    tables = build_report(ratings, None, stimuli, None, n_boot=20, progress=lambda d, t: calls.append((d, t)))
    assert list(tables) == list(TABLES)
    assert tables["model_continuous"].empty and tables["model_as_rater"].empty
    assert not tables["icc"].empty and not tables["ceiling"].empty
    assert calls[-1][0] == calls[-1][1]


def test_build_report_without_ratings_says_what_to_do():
    with pytest.raises(ValueError, match="import a rating batch"):
        build_report(pd.DataFrame(columns=["stimulus", "stimulus_id", "rater", "batch_id", "emotion",
                                           "valence", "arousal"]), None, None, None)


def test_model_without_probabilities_gets_nan_and_a_note():
    ratings, predictions, stimuli, models = synthetic_study(30, 4, 1, seed=8)
    predictions[[c for c in predictions if c.startswith("p_")]] = np.nan
    table = ag.model_vs_human_labels(ag.StudyData.from_frames(ratings, predictions, stimuli, models), NO_BOOT)
    jsd = table[table["metric"] == "jsd"].iloc[0]
    assert np.isnan(jsd["estimate"]) and jsd["n"] == 0 and "no class probabilities" in jsd["note"]
    accuracy = table[table["metric"] == "accuracy"].iloc[0]
    assert accuracy["n"] > 0 and "probabilities" not in accuracy["note"]
