"""Independent recomputation of ``core.agreement.report.build_report`` numbers with plain library calls.

Each test rebuilds one table's key numbers from the long input frames (pandas pivots, loops,
pingouin, krippendorff, scikit-learn, statsmodels, scipy) without the engine's sum-of-
contributions machinery, on a synthetic study with missing ratings and a 7-class model, and on a
small hand-made study with ties, contempt and missing model outputs.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from core.agreement.data import LABELS
from core.agreement.report import build_report
from core.agreement.synthetic import synthetic_study

SEVEN = [label for label in LABELS if label != "contempt"]


def lin_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989) by hand, population moments."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def majority(votes: list[str], intended: str | None = None) -> str | None:
    """Most frequent label; on a tie the intended label if it is among the tied, else None."""
    ranked = Counter(votes).most_common()
    if not ranked:
        return None
    tied = [label for label, count in ranked if count == ranked[0][1]]
    if len(tied) == 1:
        return tied[0]
    return intended if intended in tied else None


def hand_study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Eight stimuli x four raters (one gap), a tie on s2, contempt on s3; two models."""
    votes = {
        1: ["happiness", "happiness", "happiness", "surprise"],
        2: ["anger", "anger", "disgust", "disgust"],
        3: ["contempt", "contempt", "contempt", "disgust"],
        4: ["sadness", "sadness", "neutral", None],
        5: ["fear", "surprise", "fear", "fear"],
        6: ["neutral", "neutral", "neutral", "neutral"],
        7: ["happiness", "happiness", "surprise", "surprise"],
        8: ["anger", "anger", "anger", "disgust"],
    }
    valence = np.array([[.8, .6, .9, .5], [-.6, -.5, -.7, -.4], [-.3, -.2, -.4, -.1],
                        [-.6, -.7, -.2, np.nan], [-.5, .1, -.6, -.4], [0, .1, -.1, 0],
                        [.7, .5, .4, .3], [-.8, -.7, -.6, -.9]])
    arousal = np.array([[.5, .4, .6, .7], [.6, .7, .3, .2], [.1, 0, .2, .2], [-.4, -.3, -.5, np.nan],
                        [.8, .9, .7, .6], [-.2, -.1, 0, -.3], [.5, .6, .9, .8], [.7, .8, .6, .5]])
    ratings = pd.DataFrame([
        {"stimulus": f"s{i}", "stimulus_id": i, "rater": f"r{r}", "batch_id": 1,
         "emotion": votes[i][r], "valence": valence[i - 1, r], "arousal": arousal[i - 1, r]}
        for i in votes for r in range(4) if not (i == 4 and r == 3)
    ])
    intended = ["happiness", "anger", "contempt", "sadness", "fear", "neutral", "surprise", "anger"]
    stimuli = pd.DataFrame({"stimulus": [f"s{i}" for i in votes], "stimulus_id": list(votes),
                            "intended_emotion": intended,
                            "gender": ["f", "m", "f", "m", "f", "m", "f", "m"]})
    rng = np.random.default_rng(3)
    rows = []
    for model, own in (("eight", list(LABELS)), ("seven", SEVEN)):
        for i in votes:
            p = rng.dirichlet(np.ones(len(own)))
            row = {"stimulus": f"s{i}", "stimulus_id": i, "model_id": model,
                   "label": own[int(np.argmax(p))],
                   "valence": float(np.nanmean(valence[i - 1]) + rng.normal(0, .2)),
                   "arousal": float(np.nanmean(arousal[i - 1]) + rng.normal(0, .2))}
            row.update({f"p_{k}": np.nan for k in LABELS})
            row.update({f"p_{k}": v for k, v in zip(own, p)})
            rows.append(row)
    predictions = pd.DataFrame(rows)
    predictions.loc[(predictions["model_id"] == "seven") & (predictions["stimulus_id"] == 5),
                    ["valence", "arousal"]] = np.nan
    models = pd.DataFrame({"model_id": ["eight", "seven"], "name": ["Eight", "Seven"],
                           "pipeline": ["A", "B"], "labels": [list(LABELS), SEVEN]})
    return ratings, predictions, stimuli, models


STUDIES = {
    "synthetic": lambda: synthetic_study(40, 6, 3, seed=5, missing_share=0.1),
    "hand": hand_study,
}


@pytest.fixture(scope="module", params=list(STUDIES))
def case(request) -> dict:
    frames = STUDIES[request.param]()
    tables = build_report(*frames, n_boot=60, seed=1)
    ratings, predictions, stimuli, models = frames
    return {"name": request.param, "ratings": ratings, "predictions": predictions,
            "stimuli": stimuli, "models": models, "tables": tables}


def wide(ratings: pd.DataFrame, column: str) -> pd.DataFrame:
    """Raters x stimuli."""
    return ratings.pivot(index="rater", columns="stimulus_id", values=column)


def human_majority(ratings: pd.DataFrame, intended: pd.Series | None = None) -> pd.Series:
    """Majority label per stimulus (ties resolved by ``intended`` when given)."""
    return ratings.groupby("stimulus_id")["emotion"].apply(lambda s: majority(
        s.dropna().tolist(), None if intended is None else intended.get(s.name)))


def human_means(ratings: pd.DataFrame, dimension: str) -> pd.Series:
    return ratings.groupby("stimulus_id")[dimension].mean()


def rows(table: pd.DataFrame, **where) -> pd.DataFrame:
    mask = np.ones(len(table), bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    return table[mask]


def value(table: pd.DataFrame, **where) -> float:
    selected = rows(table, **where)
    assert len(selected) == 1, (where, len(selected))
    return float(selected["estimate"].iloc[0])


# --- humans ---------------------------------------------------------------------------------

def test_consensus_majority_ties_and_means(case):
    consensus = case["tables"]["consensus"].set_index("stimulus_id")
    expected = human_majority(case["ratings"])
    for stimulus, label in expected.items():
        got = consensus.at[stimulus, "majority_label"]
        assert (got if isinstance(got, str) else None) == (label if isinstance(label, str) else None), stimulus
        assert consensus.at[stimulus, "is_tie"] == (not isinstance(label, str))
    for dimension in ("valence", "arousal"):
        means = human_means(case["ratings"], dimension)
        sds = case["ratings"].groupby("stimulus_id")[dimension].std(ddof=1)
        assert consensus.loc[means.index, f"{dimension}_mean"].to_numpy() == pytest.approx(means.to_numpy())
        assert consensus.loc[sds.index, f"{dimension}_sd"].to_numpy() == pytest.approx(sds.to_numpy(), nan_ok=True)
    if case["name"] == "hand":
        assert consensus.at[2, "tied_labels"] == "disgust|anger"
        assert consensus.at[1, "majority_share"] == 0.75


def test_fleiss_kappa_matches_statsmodels(case):
    """Modal policy: only stimuli with the modal number of labels enter (statsmodels needs equal n)."""
    labelled = case["ratings"].dropna(subset=["emotion"])
    per_stimulus = labelled.groupby("stimulus_id")["emotion"].count()
    modal = per_stimulus.value_counts().sort_index(ascending=False).idxmax()
    kept = labelled[labelled["stimulus_id"].isin(per_stimulus[per_stimulus == modal].index)]
    table = kept.groupby(["stimulus_id", "emotion"]).size().unstack(fill_value=0)
    fleiss = case["tables"]["fleiss"]
    assert value(fleiss, metric="fleiss_kappa") == pytest.approx(statsmodels_fleiss(table.to_numpy()))
    assert rows(fleiss, metric="fleiss_kappa")["n"].iloc[0] == len(table)
    unused = [label for label in LABELS if label not in set(kept["emotion"])]
    for label in unused:
        assert np.isnan(value(fleiss, metric="category_kappa", category=label))


def test_krippendorff_alpha_matches_package(case):
    ratings, alpha = case["ratings"], case["tables"]["alpha"]
    codes = wide(ratings.assign(code=ratings["emotion"].map({k: i for i, k in enumerate(LABELS)})), "code")
    assert value(alpha, dimension="emotion", level="nominal") == pytest.approx(
        krippendorff.alpha(codes.to_numpy(float), level_of_measurement="nominal"), abs=1e-9)
    for dimension in ("valence", "arousal"):
        assert value(alpha, dimension=dimension, level="interval") == pytest.approx(
            krippendorff.alpha(wide(ratings, dimension).to_numpy(float), level_of_measurement="interval"),
            abs=1e-9)


def test_icc_six_forms_match_pingouin(case):
    icc = case["tables"]["icc"]
    for dimension in ("valence", "arousal"):
        long = case["ratings"][["stimulus_id", "rater", dimension]]
        complete = long.pivot(index="stimulus_id", columns="rater", values=dimension).dropna()
        reference = pingouin.intraclass_corr(
            complete.reset_index().melt(id_vars="stimulus_id", var_name="rater", value_name="y"),
            targets="stimulus_id", raters="rater", ratings="y",
        )
        ours = rows(icc, dimension=dimension).set_index("shrout_fleiss")
        # pingouin's rows, in order: ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k (named by version).
        for position, shrout_fleiss in enumerate(["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)",
                                                  "ICC(2,k)", "ICC(3,k)"]):
            row = reference.iloc[position]
            assert ours.at[shrout_fleiss, "estimate"] == pytest.approx(row["ICC"], abs=1e-9)
            assert ours.at[shrout_fleiss, "F"] == pytest.approx(row["F"])
            assert ours.at[shrout_fleiss, "p"] == pytest.approx(row["pval"], rel=1e-6, abs=1e-300)
            assert abs(ours.at[shrout_fleiss, "ci_low"] - row["CI95"][0]) <= 0.005 + 1e-9
            assert abs(ours.at[shrout_fleiss, "ci_high"] - row["CI95"][1]) <= 0.005 + 1e-9
        assert (ours["n"] == len(complete)).all()
        assert (ours["n_dropped"] == long["stimulus_id"].nunique() - len(complete)).all()


def loo_reference(ratings: pd.DataFrame, intended: pd.Series | None = None,
                  ) -> dict[tuple[str, str, str], tuple[float, int]]:
    """Each rater vs the others, by an explicit loop over raters."""
    out = {}
    for rater in ratings["rater"].unique():
        mine = ratings[ratings["rater"] == rater].set_index("stimulus_id")
        others = ratings[ratings["rater"] != rater]
        for dimension in ("valence", "arousal"):
            joined = pd.concat([mine[dimension], human_means(others, dimension)], axis=1, join="inner").dropna()
            if len(joined) >= 2:
                x, y = joined.iloc[:, 0].to_numpy(), joined.iloc[:, 1].to_numpy()
                out[rater, dimension, "ccc"] = (lin_ccc(x, y), len(joined))
                out[rater, dimension, "pearson_r"] = (pearsonr(x, y)[0], len(joined))
        reference = human_majority(others, intended).dropna()
        joined = pd.concat([mine["emotion"], reference], axis=1, join="inner").dropna()
        out[rater, "emotion", "accuracy"] = (accuracy_score(joined.iloc[:, 1], joined.iloc[:, 0]), len(joined))
        out[rater, "emotion", "cohen_kappa"] = (
            cohen_kappa_score(joined.iloc[:, 1], joined.iloc[:, 0]), len(joined))
    return out


def test_leave_one_rater_out_and_ceiling(case):
    loo = case["tables"]["loo"].set_index(["rater", "dimension", "metric"])
    reference = loo_reference(case["ratings"])
    for key, (expected, n) in reference.items():
        assert loo.at[key, "estimate"] == pytest.approx(expected, nan_ok=True), key
        assert loo.at[key, "n"] == n, key
    ceiling = case["tables"]["ceiling"].set_index(["dimension", "metric"])
    for (dimension, metric), row in ceiling.iterrows():
        scores = [v for (r, d, m), (v, _) in reference.items() if (d, m) == (dimension, metric)]
        assert row["estimate"] == pytest.approx(np.median(scores))
        assert row["human_min"] == pytest.approx(min(scores))


# --- models vs humans -----------------------------------------------------------------------

def model_frame(case, model: str) -> pd.DataFrame:
    return case["predictions"][case["predictions"]["model_id"] == model].set_index("stimulus_id")


def test_model_continuous_matches_scipy_and_lin(case):
    table = case["tables"]["model_continuous"]
    for model in case["models"]["model_id"]:
        predicted = model_frame(case, model)
        for dimension in ("valence", "arousal"):
            joined = pd.concat([predicted[dimension], human_means(case["ratings"], dimension)],
                               axis=1, join="inner").dropna()
            x, y = joined.iloc[:, 0].to_numpy(), joined.iloc[:, 1].to_numpy()
            where = {"model_id": model, "dimension": dimension}
            assert value(table, metric="ccc", **where) == pytest.approx(lin_ccc(x, y))
            assert value(table, metric="pearson_r", **where) == pytest.approx(pearsonr(x, y)[0])
            assert value(table, metric="rmse", **where) == pytest.approx(np.sqrt(np.mean((x - y) ** 2)))
            assert value(table, metric="mae", **where) == pytest.approx(np.mean(np.abs(x - y)))
            assert value(table, metric="mean_bias", **where) == pytest.approx(np.mean(x - y))
            assert rows(table, metric="ccc", **where)["n"].iloc[0] == len(joined)


def label_reference(case, reference: str) -> pd.Series:
    if reference == "human_majority":
        return human_majority(case["ratings"])
    return case["stimuli"].set_index("stimulus_id")["intended_emotion"]


def test_model_labels_both_scopes_match_sklearn(case):
    table = case["tables"]["model_labels"]
    described = case["models"].set_index("model_id")["labels"]
    for model in case["models"]["model_id"]:
        predicted = model_frame(case, model)
        for reference in ("human_majority", "intended"):
            truth = label_reference(case, reference)
            joined = pd.concat([truth.rename("truth"), predicted["label"]], axis=1, join="inner").dropna()
            for scope in ("all", "outputtable"):
                scoped = joined if scope == "all" else joined[joined["truth"].isin(described[model])]
                where = {"model_id": model, "reference": reference, "scope": scope}
                y, guess = scoped["truth"], scoped["label"]
                assert value(table, metric="accuracy", **where) == pytest.approx(accuracy_score(y, guess))
                assert value(table, metric="macro_f1", **where) == pytest.approx(f1_score(y, guess, average="macro"))
                assert value(table, metric="cohen_kappa", **where) == pytest.approx(cohen_kappa_score(y, guess))
                assert rows(table, metric="accuracy", **where)["n"].iloc[0] == len(scoped)
                probs = predicted.loc[scoped.index, [f"p_{k}" for k in LABELS]].fillna(0)
                on_truth = [probs.at[i, f"p_{label}"] for i, label in scoped["truth"].items()]
                assert value(table, metric="mean_p_reference", **where) == pytest.approx(np.mean(on_truth))


def test_jsd_is_the_squared_scipy_distance_in_base_2(case):
    """README: ``jsd`` is the divergence (base 2, 0..1), i.e. scipy's distance squared."""
    table = case["tables"]["model_labels"]
    ratings = case["ratings"].dropna(subset=["emotion"])
    shares = ratings.groupby("stimulus_id")["emotion"].value_counts(normalize=True).unstack(fill_value=0)
    shares = shares.reindex(columns=list(LABELS), fill_value=0)
    truth = human_majority(case["ratings"]).dropna()
    for model in case["models"]["model_id"]:
        probs = model_frame(case, model)[[f"p_{k}" for k in LABELS]].fillna(0)
        own = np.array([probs[f"p_{k}"].gt(0).any() for k in LABELS])
        divergences = {"all": [], "outputtable": []}
        for stimulus in truth.index:
            human, machine = shares.loc[stimulus].to_numpy(), probs.loc[stimulus].to_numpy()
            divergences["all"].append(jensenshannon(human, machine, base=2) ** 2)
            if (human * own).sum() > 0:
                divergences["outputtable"].append(jensenshannon(human * own, machine * own, base=2) ** 2)
        for scope, values in divergences.items():
            where = {"model_id": model, "reference": "human_majority", "scope": scope, "metric": "jsd"}
            assert value(table, **where) == pytest.approx(np.mean(values))
            assert rows(table, **where)["n"].iloc[0] == len(values)


def test_recall_and_confusion_row_shares_match_sklearn(case):
    recall, confusion = case["tables"]["recall"], case["tables"]["confusion"]
    for model in case["models"]["model_id"]:
        for reference in ("human_majority", "intended"):
            truth = label_reference(case, reference)
            joined = pd.concat([truth.rename("truth"), model_frame(case, model)["label"]], axis=1,
                               join="inner").dropna()
            shares = confusion_matrix(joined["truth"], joined["label"], labels=list(LABELS), normalize="true")
            counts = confusion_matrix(joined["truth"], joined["label"], labels=list(LABELS))
            ours = rows(confusion, model_id=model, reference=reference)
            ours_counts = ours.pivot(index="true_label", columns="predicted_label", values="count")
            ours_shares = ours.pivot(index="true_label", columns="predicted_label", values="share")
            assert ours_counts.loc[list(LABELS), list(LABELS)].to_numpy() == pytest.approx(counts)
            supported = counts.sum(axis=1) > 0
            assert ours_shares.loc[list(LABELS), list(LABELS)].to_numpy()[supported] == pytest.approx(shares[supported])
            assert ours_shares.loc[np.array(LABELS)[~supported]].isna().all().all()
            scoped = rows(recall, model_id=model, reference=reference, scope="all").set_index("emotion")
            for k, label in enumerate(LABELS):
                expected = counts[k, k] / counts[k].sum() if supported[k] else np.nan
                assert scoped.at[label, "estimate"] == pytest.approx(expected, nan_ok=True), label
                assert scoped.at[label, "n"] == counts[k].sum()


def test_model_as_rater_percentile_among_loo_scores(case):
    table = case["tables"]["model_as_rater"]
    reference = loo_reference(case["ratings"])
    majority = human_majority(case["ratings"])
    for model in case["models"]["model_id"]:
        predicted = model_frame(case, model)
        for dimension, metric in (("valence", "ccc"), ("arousal", "pearson_r"), ("emotion", "accuracy"),
                                  ("emotion", "cohen_kappa")):
            if dimension == "emotion":
                joined = pd.concat([majority, predicted["label"]], axis=1, join="inner").dropna()
                score = (accuracy_score if metric == "accuracy" else cohen_kappa_score)(
                    joined.iloc[:, 0], joined.iloc[:, 1])
            else:
                joined = pd.concat([predicted[dimension], human_means(case["ratings"], dimension)],
                                   axis=1, join="inner").dropna()
                x, y = joined.iloc[:, 0].to_numpy(), joined.iloc[:, 1].to_numpy()
                score = lin_ccc(x, y) if metric == "ccc" else pearsonr(x, y)[0]
            humans = np.array([v for (_, d, m), (v, _) in reference.items() if (d, m) == (dimension, metric)])
            percentile = 100 * ((humans < score).sum() + 0.5 * (humans == score).sum()) / len(humans)
            row = rows(table, model_id=model, dimension=dimension, metric=metric).iloc[0]
            assert row["estimate"] == pytest.approx(score)
            assert row["percentile"] == pytest.approx(percentile)
            assert row["human_median"] == pytest.approx(np.median(humans))


def test_panel_icc_and_alpha_with_and_without_each_model(case):
    panel = case["tables"]["panel_reliability"]
    for model in case["models"]["model_id"]:
        predicted = model_frame(case, model)
        codes = {k: i for i, k in enumerate(LABELS)}
        humans = wide(case["ratings"].assign(code=case["ratings"]["emotion"].map(codes)), "code")
        machine = predicted["label"].map(codes).rename("model").to_frame().T.reindex(columns=humans.columns)
        covered = machine.loc["model"].notna()
        for panel_name, block in (("humans", humans), ("humans + model", pd.concat([humans, machine]))):
            alpha = krippendorff.alpha(block.loc[:, covered].to_numpy(float), level_of_measurement="nominal")
            assert value(panel, model_id=model, dimension="emotion", panel=panel_name) == pytest.approx(
                alpha, abs=1e-9)
        for dimension in ("valence", "arousal"):
            humans = wide(case["ratings"], dimension)
            machine = predicted[dimension].rename("model").to_frame().T
            joined = pd.concat([humans, machine.reindex(columns=humans.columns)])
            covered = joined.loc["model"].notna()
            complete = joined.loc[:, covered & joined.notna().all()]
            for panel_name, block in (("humans", complete.drop(index="model")), ("humans + model", complete)):
                long = block.T.reset_index().melt(id_vars="stimulus_id", var_name="rater", value_name="y")
                expected = pingouin.intraclass_corr(long, targets="stimulus_id", raters="rater",
                                                    ratings="y").iloc[1]["ICC"]
                where = {"model_id": model, "dimension": dimension, "metric": "icc", "panel": panel_name}
                assert value(panel, **where) == pytest.approx(expected, abs=1e-9)
                alpha = krippendorff.alpha(joined.loc[block.index, covered].to_numpy(float),
                                           level_of_measurement="interval")
                assert value(panel, model_id=model, dimension=dimension, metric="krippendorff_alpha",
                             panel=panel_name) == pytest.approx(alpha, abs=1e-9)


def test_model_vs_model_ccc_and_kappa(case):
    table = case["tables"]["model_vs_model"]
    for a, b in combinations(list(case["models"]["model_id"]), 2):
        first, second = model_frame(case, a), model_frame(case, b)
        for dimension in ("valence", "arousal"):
            joined = pd.concat([first[dimension], second[dimension]], axis=1, join="inner").dropna()
            expected = lin_ccc(joined.iloc[:, 0], joined.iloc[:, 1])
            assert value(table, model_a=a, model_b=b, dimension=dimension) == pytest.approx(expected)
            assert value(table, model_a=b, model_b=a, dimension=dimension) == pytest.approx(expected)
        joined = pd.concat([first["label"], second["label"]], axis=1, join="inner").dropna()
        assert value(table, model_a=a, model_b=b, metric="cohen_kappa") == pytest.approx(
            cohen_kappa_score(joined.iloc[:, 0], joined.iloc[:, 1]))
    for model in case["models"]["model_id"]:
        joined = pd.concat([model_frame(case, model)["label"], human_majority(case["ratings"])],
                           axis=1, join="inner").dropna()
        assert value(table, model_a=model, model_b="human_consensus", metric="cohen_kappa") == pytest.approx(
            cohen_kappa_score(joined.iloc[:, 0], joined.iloc[:, 1]))


def test_subgroup_estimates_and_gaps(case):
    groups, gaps = case["tables"]["subgroups"], case["tables"]["subgroup_gaps"]
    attribute = "gender"
    by_group = case["stimuli"].groupby(attribute)["stimulus_id"].apply(set)
    expected = {}
    for group, members in by_group.items():
        ratings = case["ratings"][case["ratings"]["stimulus_id"].isin(members)]
        for model in case["models"]["model_id"]:
            predicted = model_frame(case, model)
            predicted = predicted[predicted.index.isin(members)]
            joined = pd.concat([predicted["valence"], human_means(ratings, "valence")], axis=1,
                               join="inner").dropna()
            expected[group, model, "valence", "ccc"] = lin_ccc(joined.iloc[:, 0], joined.iloc[:, 1])
            labels = pd.concat([human_majority(ratings), predicted["label"]], axis=1, join="inner").dropna()
            expected[group, model, "emotion", "accuracy"] = accuracy_score(labels.iloc[:, 0], labels.iloc[:, 1])
            expected[group, model, "emotion", "macro_f1"] = f1_score(labels.iloc[:, 0], labels.iloc[:, 1],
                                                                     average="macro")
        codes = ratings.assign(code=ratings["emotion"].map({k: i for i, k in enumerate(LABELS)}))
        expected[group, "humans", "emotion", "krippendorff_alpha_nominal"] = krippendorff.alpha(
            wide(codes, "code").to_numpy(float), level_of_measurement="nominal")
        expected[group, "humans", "arousal", "krippendorff_alpha_interval"] = krippendorff.alpha(
            wide(ratings, "arousal").to_numpy(float), level_of_measurement="interval")
    for (group, model, dimension, metric), number in expected.items():
        where = {"attribute": attribute, "group": group, "model_id": model, "dimension": dimension,
                 "metric": metric}
        where |= {"scope": "all"} if model != "humans" else {}
        assert value(groups, **where) == pytest.approx(number, abs=1e-9), where
    first, second = sorted(by_group.index)[:2]
    for (group, model, dimension, metric), number in expected.items():
        if group != first:
            continue
        gap = value(gaps, attribute=attribute, group_a=first, group_b=second, model_id=model,
                    dimension=dimension, metric=metric)
        assert gap == pytest.approx(number - expected[second, model, dimension, metric], abs=1e-9)


def test_ties_resolved_by_the_intended_emotion():
    """Hand study: s2 ties anger|disgust (intended anger), s7 happiness|surprise (intended
    surprise); with ties="intended" both resolve, for model accuracy and for leave-one-out
    majorities of the other raters (build_report crashed on this policy before)."""
    frames = hand_study()
    tables = build_report(*frames, n_boot=0, ties="intended")
    consensus = tables["consensus"].set_index("stimulus_id")
    assert consensus.at[2, "majority_label"] == "anger" and consensus.at[7, "majority_label"] == "surprise"
    assert (consensus.loc[[2, 7], "tie_resolved_by"] == "intended").all()
    ratings, predictions, stimuli, _ = frames
    intended = stimuli.set_index("stimulus_id")["intended_emotion"]
    resolved = human_majority(ratings, intended)
    assert resolved.notna().all()
    guess = predictions[predictions["model_id"] == "eight"].set_index("stimulus_id")["label"]
    assert value(tables["model_labels"], model_id="eight", reference="human_majority", scope="all",
                 metric="accuracy") == pytest.approx(accuracy_score(resolved, guess.loc[resolved.index]))
    loo = tables["loo"].set_index(["rater", "dimension", "metric"])
    for key, (expected, n) in loo_reference(ratings, intended).items():
        if key[1] == "emotion":
            assert loo.at[key, "estimate"] == pytest.approx(expected, nan_ok=True), key
            assert loo.at[key, "n"] == n, key
