"""Issue 12 statistics: paired model comparisons, pipelines as the unit, replication, planning.

Every bootstrap number is checked against a plain Python loop over the same resamples (the
draws ``Bootstrap`` documents: one ``integers()`` call from the seed); invariances with
Hypothesis; golden values with their source in the docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import agreement as ag
from core.agreement.comparisons import bootstrap_p_value, holm, model_differences
from core.agreement.pipelines import CONSENSUS_ID, with_consensus_model
from core.agreement.synthetic import synthetic_study
from core.agreement.report import TABLES, build_report
from core.reporting.charts import replication_forest

N_BOOT = 60


def resample_indices(n_items: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def lin_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989) with population moments, written out."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var() + y.var() + (mx - my) ** 2)


def percentile_ci(values: list[float]) -> list[float]:
    finite = np.array(values, float)
    return list(np.quantile(finite[np.isfinite(finite)], [0.025, 0.975]))


def loop_p_value(values: list[float]) -> float:
    values = np.array(values, float)
    values = values[np.isfinite(values)]
    p = 2 * min((values <= 0).mean(), (values >= 0).mean())
    return min(1.0, max(p, 1 / (len(values) + 1)))


@pytest.fixture(scope="module")
def study():
    return synthetic_study(40, 5, 4, seed=3)


@pytest.fixture(scope="module")
def tables(study):
    return build_report(*study, n_boot=N_BOOT, seed=0)


@pytest.fixture(scope="module")
def matrices(study):
    """Human mean V per stimulus, each model's V and label, human majority, in id order."""
    ratings, predictions, _, _ = study
    ids = np.sort(ratings["stimulus_id"].unique())
    human_v = ratings.groupby("stimulus_id")["valence"].mean().reindex(ids).to_numpy()
    wide = predictions.pivot(index="stimulus_id", columns="model_id")
    votes = ratings.groupby(["stimulus_id", "emotion"]).size().unstack(fill_value=0).reindex(ids)
    top = votes.max(axis=1)
    tied = votes.eq(top, axis=0).sum(axis=1) > 1
    majority = votes.idxmax(axis=1).where(~tied)
    return ids, human_v, wide["valence"].reindex(ids), wide["label"].reindex(ids), majority


# --- model_differences ----------------------------------------------------------------------

def test_pair_difference_equals_a_loop_over_resamples(tables, matrices):
    """model_0 - model_1 in valence CCC and label accuracy: estimate, CI and p-value."""
    _, human_v, model_v, model_label, majority = matrices
    a, b = model_v["model_0"].to_numpy(), model_v["model_1"].to_numpy()
    ccc_diffs, acc_diffs = [], []
    truth = majority.to_numpy()
    hit_a = model_label["model_0"].to_numpy() == truth
    hit_b = model_label["model_1"].to_numpy() == truth
    scored = pd.notna(truth)
    for index in resample_indices(len(human_v)):
        ccc_diffs.append(lin_ccc(a[index], human_v[index]) - lin_ccc(b[index], human_v[index]))
        keep = index[scored[index]]
        acc_diffs.append(hit_a[keep].mean() - hit_b[keep].mean())
    rows = tables["model_differences"].query(
        "comparison == 'model vs model' and model_a == 'model_0' and model_b == 'model_1'"
    ).set_index(["dimension", "metric"])
    ccc = rows.loc[("valence", "ccc")]
    assert ccc["estimate"] == pytest.approx(lin_ccc(a, human_v) - lin_ccc(b, human_v))
    assert [ccc["ci_low"], ccc["ci_high"]] == pytest.approx(percentile_ci(ccc_diffs))
    assert ccc["p_value"] == pytest.approx(loop_p_value(ccc_diffs))
    accuracy = rows.loc[("emotion", "accuracy")]
    assert accuracy["estimate"] == pytest.approx(hit_a[scored].mean() - hit_b[scored].mean())
    assert [accuracy["ci_low"], accuracy["ci_high"]] == pytest.approx(percentile_ci(acc_diffs))
    assert accuracy["n"] == scored.sum()


def test_macro_f1_difference_equals_sklearn_per_resample(tables, matrices):
    from sklearn.metrics import f1_score

    _, _, _, model_label, majority = matrices
    truth = majority.to_numpy()
    scored = pd.notna(truth)

    def macro(model: str, index: np.ndarray) -> float:
        keep = index[scored[index]]
        return f1_score(truth[keep].astype(str), model_label[model].to_numpy()[keep].astype(str),
                        average="macro")

    everything = np.arange(len(truth))
    diffs = [macro("model_0", i) - macro("model_2", i) for i in resample_indices(len(truth))]
    row = tables["model_differences"].query(
        "model_a == 'model_0' and model_b == 'model_2' and metric == 'macro_f1'").iloc[0]
    assert row["estimate"] == pytest.approx(macro("model_0", everything) - macro("model_2", everything))
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(percentile_ci(diffs))


def test_model_minus_ceiling_equals_a_loop_and_flags_the_human_range(study, tables, matrices):
    """Model CCC minus the median rater leave-one-out CCC, in every resample."""
    ratings = study[0]
    _, human_v, model_v, _, _ = matrices
    ids = np.sort(ratings["stimulus_id"].unique())
    by_rater = ratings.pivot(index="stimulus_id", columns="rater", values="valence").reindex(ids)
    others = {r: by_rater.drop(columns=r).mean(axis=1).to_numpy() for r in by_rater}
    model = model_v["model_3"].to_numpy()

    def ceiling(index):
        return np.median([lin_ccc(by_rater[r].to_numpy()[index], others[r][index]) for r in by_rater])

    everything = np.arange(len(ids))
    diffs = [lin_ccc(model[i], human_v[i]) - ceiling(i) for i in resample_indices(len(ids))]
    row = tables["model_differences"].query(
        "comparison == 'model vs human ceiling' and model_a == 'model_3' and dimension == 'valence'"
        " and metric == 'ccc'").iloc[0]
    assert row["estimate"] == pytest.approx(lin_ccc(model, human_v) - ceiling(everything))
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(percentile_ci(diffs))
    ceiling_row = tables["ceiling"].query("dimension == 'valence' and metric == 'ccc'").iloc[0]
    overlaps = row["score_a_ci_low"] <= ceiling_row["human_q75"] and (
        row["score_a_ci_high"] >= ceiling_row["human_q25"])
    assert row["within_human_range"] == overlaps
    assert row["human_q25"] == pytest.approx(ceiling_row["human_q25"])


def test_holm_family_is_one_metric_and_matches_statsmodels(tables):
    from statsmodels.stats.multitest import multipletests

    table = tables["model_differences"]
    family = table.query("dimension == 'arousal' and metric == 'pearson_r'")
    n_models = 5  # four synthetic models and the all-pipelines consensus
    assert len(family) == n_models * (n_models - 1) // 2 + n_models
    assert family["holm_family_size"].eq(len(family)).all()
    expected = multipletests(family["p_value"].to_numpy(), method="holm")[1]
    assert family["p_holm"].to_numpy() == pytest.approx(expected)


@settings(max_examples=25, deadline=None)  # multipletests takes ~0.2 s a call here
@given(st.lists(st.one_of(st.floats(0.0001, 1.0), st.just(float("nan"))), min_size=1, max_size=30))
def test_holm_equals_statsmodels_and_ignores_nan(p_values):
    from statsmodels.stats.multitest import multipletests

    p = np.array(p_values)
    adjusted = holm(p)
    tested = np.isfinite(p)
    assert np.isnan(adjusted[~tested]).all()
    if tested.any():
        assert adjusted[tested] == pytest.approx(multipletests(p[tested], method="holm")[1])


def test_bootstrap_p_value_is_two_sided_and_floored():
    replicates = np.array([[0.5, 0.0, -1.0], [0.2, 0.0, 1.0], [-0.1, 0.0, 2.0], [0.3, 0.0, 3.0]])
    # column 0: one of four <= 0 -> 2 * 1/4; column 1: all zero -> 1; column 2: floor 1/(4+1).
    assert bootstrap_p_value(replicates) == pytest.approx([0.5, 1.0, 0.5])
    all_positive = np.ones((9, 1))
    assert bootstrap_p_value(all_positive) == pytest.approx([0.1])
    assert np.isnan(bootstrap_p_value(np.full((5, 1), np.nan))).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_stimuli=st.integers(8, 30))
def test_swapping_two_models_negates_their_difference(seed, n_stimuli):
    ratings, predictions, stimuli, models = synthetic_study(n_stimuli, 4, 2, seed=seed)
    boot = ag.Bootstrap(30, seed=seed)
    forward = model_differences(ag.StudyData.from_frames(ratings, predictions, stimuli, models), boot)
    swapped = model_differences(
        ag.StudyData.from_frames(ratings, predictions, stimuli, models.iloc[::-1]), boot)
    keys = ["dimension", "metric"]
    first = forward.query("comparison == 'model vs model'").set_index(keys)
    second = swapped.query("comparison == 'model vs model'").set_index(keys).loc[first.index]
    assert (first["model_a"] == second["model_b"]).all()
    np.testing.assert_allclose(first["estimate"], -second["estimate"], atol=1e-12)
    np.testing.assert_allclose(first["ci_low"], -second["ci_high"], atol=1e-12)
    np.testing.assert_allclose(first["p_value"], second["p_value"])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_stimuli=st.integers(8, 30))
def test_a_model_duplicated_as_another_pipeline_differs_by_exactly_zero(seed, n_stimuli):
    ratings, predictions, stimuli, models = synthetic_study(n_stimuli, 4, 2, seed=seed)
    twin = predictions[predictions["model_id"] == "model_0"].assign(model_id="twin")
    described = pd.concat([models, models.iloc[[0]].assign(model_id="twin", pipeline="Z")])
    data = ag.StudyData.from_frames(ratings, pd.concat([predictions, twin]), stimuli, described)
    table = model_differences(data, ag.Bootstrap(30, seed=seed))
    pair = table.query("model_a == 'model_0' and model_b == 'twin'")
    assert len(pair) == 9 and not pair["same_pipeline"].any()
    defined = pair["estimate"].notna()
    assert (pair.loc[defined, ["estimate", "ci_low", "ci_high"]] == 0).all().all()
    assert (pair.loc[defined, "p_value"] == 1).all()


# --- pipelines and the consensus model ------------------------------------------------------

def test_consensus_model_averages_one_representative_per_pipeline(study):
    _, predictions, _, models = study
    joined, described, notes = with_consensus_model(predictions, models)
    consensus = joined[joined["model_id"] == CONSENSUS_ID].set_index("stimulus_id")
    # synthetic pipelines: model_0 A, model_1 B, model_2 C, model_3 A -> representatives 0, 1, 2
    members = predictions[predictions["model_id"].isin(["model_0", "model_1", "model_2"])]
    stimulus = consensus.index[0]
    rows = members[members["stimulus_id"] == stimulus]
    assert consensus.at[stimulus, "valence"] == pytest.approx(rows["valence"].mean())
    probs = rows[[f"p_{label}" for label in ag.data.LABELS]].fillna(0.0).mean()
    assert consensus.at[stimulus, "p_contempt"] == pytest.approx(probs["p_contempt"])
    assert consensus.at[stimulus, "label"] == probs.idxmax().removeprefix("p_")
    assert described.iloc[-1]["pipeline"] == "consensus"
    assert "model_0, model_1, model_2" in notes[0]
    with pytest.raises(ValueError, match="no predictions"):
        with_consensus_model(predictions, models, ["model_0", "nope"])
    unchanged, _, notes = with_consensus_model(predictions, models, ["model_0"])
    assert len(unchanged) == len(predictions) and "at least two pipelines" in notes[0]


def test_every_table_includes_the_consensus_model(tables):
    assert CONSENSUS_ID in set(tables["models"]["model_id"])
    assert CONSENSUS_ID in set(tables["model_continuous"]["model_id"])
    assert CONSENSUS_ID in set(tables["model_differences"]["model_a"]) | set(
        tables["model_differences"]["model_b"])
    assert set(TABLES) >= {"model_differences", "pipelines", "replication", "rater_planning"}


def test_pipeline_means_and_spread_equal_a_loop_over_resamples(tables, matrices):
    """Pipeline A = model_0 and model_3; between-pipeline SD over the pipelines A, B, C."""
    _, human_v, model_v, _, _ = matrices
    pipelines = {"A": ["model_0", "model_3"], "B": ["model_1"], "C": ["model_2"]}

    def pipeline_means(index):
        return {p: np.mean([lin_ccc(model_v[m].to_numpy()[index], human_v[index]) for m in ms])
                for p, ms in pipelines.items()}

    everything = np.arange(len(human_v))
    means = pipeline_means(everything)
    spreads = [np.std(list(pipeline_means(i).values()), ddof=1)
               for i in resample_indices(len(human_v))]
    table = tables["pipelines"].query("dimension == 'valence' and metric == 'ccc'").set_index(
        ["pipeline", "statistic"])
    assert table.loc[("A", "mean"), "estimate"] == pytest.approx(means["A"])
    assert table.loc[("A", "mean"), "n_models"] == 2
    between = table.loc[("all pipelines", "between_pipeline_sd")]
    assert between["estimate"] == pytest.approx(np.std(list(means.values()), ddof=1))
    assert [between["ci_low"], between["ci_high"]] == pytest.approx(percentile_ci(spreads))
    within = table.loc[("A", "within_pipeline_sd"), "estimate"]
    scores = [lin_ccc(model_v[m].to_numpy(), human_v) for m in pipelines["A"]]
    assert within == pytest.approx(np.std(scores, ddof=1))
    assert ("consensus", "mean") in table.index


# --- replication ----------------------------------------------------------------------------

def test_pooled_gap_equals_a_loop_and_summary_counts_replications(study, tables, matrices):
    _, human_v, model_v, _, _ = matrices
    stimuli = study[2].sort_values("stimulus_id")
    female = (stimuli["gender"] == "female").to_numpy()
    pipelines = {"A": ["model_0", "model_3"], "B": ["model_1"], "C": ["model_2"]}

    def pooled(index):
        def ccc(model, group):
            chosen = index[(female if group else ~female)[index]]
            return lin_ccc(model_v[model].to_numpy()[chosen], human_v[chosen])
        return np.mean([np.mean([ccc(m, True) - ccc(m, False) for m in ms])
                        for ms in pipelines.values()])

    replication = tables["replication"].query(
        "finding == 'gender: female − male' and dimension == 'valence' and metric == 'ccc'")
    row = replication.query("unit == 'pooled'").iloc[0]
    assert row["estimate"] == pytest.approx(pooled(np.arange(len(human_v))))
    loop = [pooled(i) for i in resample_indices(len(human_v))]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(percentile_ci(loop))
    units = replication.query("unit == 'pipeline'")
    sign = np.sign(row["estimate"])
    held = ((units["ci_low"] > 0) | (units["ci_high"] < 0)) & (np.sign(units["estimate"]) == sign)
    assert (units["replicated"] == held).all()
    summary = replication.query("unit == 'summary'").iloc[0]
    assert summary["n_units"] == 3 and summary["n_replicated"] == held.sum()
    assert summary["summary"].startswith(f"holds in {held.sum()} of 3 pipelines")
    assert len(replication.query("unit == 'humans'")) == 1


def test_human_gap_row_equals_a_loop_over_raters(study, tables):
    """The humans row: median over raters of each rater's CCC with the mean of the others, in
    the female group minus the male group (the report takes the group sums from the
    leave-one-out step, the male group as all minus female)."""
    ratings, _, stimuli, _ = study
    wide = ratings.pivot(index="stimulus_id", columns="rater", values="valence").sort_index()
    female = (stimuli.set_index("stimulus_id").loc[wide.index, "gender"] == "female").to_numpy()
    values = wide.to_numpy()
    others = (np.nansum(values, axis=1, keepdims=True) - np.nan_to_num(values)) / (
        np.isfinite(values).sum(axis=1, keepdims=True) - np.isfinite(values))

    def gap(index):
        medians = []
        for group in (female, ~female):
            chosen = index[group[index]]
            scores = [lin_ccc(values[chosen, r], others[chosen, r]) for r in range(values.shape[1])]
            medians.append(np.median(scores))
        return medians[0] - medians[1]

    row = tables["replication"].query(
        "finding == 'gender: female − male' and dimension == 'valence' and unit == 'humans'"
    ).iloc[0]
    assert row["estimate"] == pytest.approx(gap(np.arange(len(values))))
    loop = [gap(i) for i in resample_indices(len(values))]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(percentile_ci(loop))


def test_bias_finding_is_mean_model_minus_human(tables, matrices):
    _, human_v, model_v, _, _ = matrices
    row = tables["replication"].query(
        "finding.str.startswith('bias') and dimension == 'valence' and unit == 'model' "
        "and model_id == 'model_1'", engine="python").iloc[0]
    assert row["estimate"] == pytest.approx(np.mean(model_v["model_1"].to_numpy() - human_v))


def test_replication_gaps_parameter_and_unknown_group(study):
    tables = build_report(*study, n_boot=10, replication_gaps=[("set", "A", "C")])
    findings = set(tables["replication"]["finding"])
    assert "set: A − C" in findings and "gender: female − male" not in findings
    with pytest.raises(ValueError, match="no group"):
        build_report(*study, n_boot=10, replication_gaps=[("set", "A", "Z")])


def test_forest_plot_shows_pipelines_pooled_and_humans(tables):
    chart = replication_forest(tables["replication"], "gender: female − male", "arousal", "ccc")
    spec = chart.to_dict()
    rows = [row for values in spec["datasets"].values() for row in values if "label" in row]
    assert [row["label"] for row in rows] == ["A", "B", "C", "pooled (all pipelines)",
                                               "humans (ceiling)"]
    assert "pipelines" in spec["title"]
    with pytest.raises(ValueError, match="no replication rows"):
        replication_forest(tables["replication"], "nothing", "arousal", "ccc")
