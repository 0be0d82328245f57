"""Disagreement explorer table (core.agreement.disagreement) against plain loops, and invariances."""

from __future__ import annotations

import math
from statistics import mean, stdev

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from core.agreement import StudyData, human_consensus
from core.agreement.data import LABELS
from core.agreement.disagreement import (
    MODEL_HUMAN_METRICS,
    MODEL_MODEL_METRICS,
    disagreement_table,
    side_by_side,
)
from core.agreement.synthetic import synthetic_study

SETTINGS = settings(max_examples=20, deadline=None)


def study(seed: int = 0, n_stimuli: int = 40, n_models: int = 4, missing_share: float = 0.1):
    ratings, predictions, stimuli, models = synthetic_study(
        n_stimuli=n_stimuli, n_raters=5, n_models=n_models, seed=seed, missing_share=missing_share)
    consensus = human_consensus(StudyData.from_frames(ratings, predictions, stimuli, models))
    return consensus, predictions, models


@pytest.fixture(scope="module")
def synthetic():
    return study()


def loop_model_human(consensus: pd.DataFrame, predictions: pd.DataFrame) -> dict[tuple[int, str], dict]:
    """Per (stimulus, model) metrics the slow, obvious way: scipy's JSD on each row."""
    human = consensus.set_index("stimulus_id")
    expected = {}
    for row in predictions.itertuples(index=False):
        h = human.loc[row.stimulus_id]
        shares = np.array([h[f"share_{label}"] for label in LABELS], float)
        probs = np.array([getattr(row, f"p_{label}") for label in LABELS], float)
        has_votes = np.isfinite(shares).all() and shares.sum() > 0
        jsd = jensenshannon(shares, np.nan_to_num(probs), base=2) ** 2 if has_votes and np.isfinite(probs).any() else math.nan
        dv, da = abs(row.valence - h["valence_mean"]), abs(row.arousal - h["arousal_mean"])
        majority = h["majority_label"]
        expected[row.stimulus_id, row.model_id] = {
            "valence_abs_diff": dv, "arousal_abs_diff": da, "va_distance": math.sqrt(dv**2 + da**2), "jsd": jsd,
            "majority_mismatch": math.nan if pd.isna(majority) else float(row.label != majority),
        }
    return expected


def test_model_human_metrics_equal_a_plain_loop(synthetic) -> None:
    consensus, predictions, models = synthetic
    table = disagreement_table(consensus, predictions, models, by="jsd")
    expected = loop_model_human(consensus, predictions)
    assert len(table) == len(expected) == len(predictions)
    for row in table.itertuples(index=False):
        for metric, value in expected[row.stimulus_id, row.model_id].items():
            assert getattr(row, metric) == pytest.approx(value, abs=1e-12, nan_ok=True), metric
    assert table["jsd"].notna().sum() > 0 and table["majority_mismatch"].isna().sum() > 0  # ties exist


@pytest.mark.parametrize("by", ["jsd", "va_distance", "majority_mismatch"])
def test_stimuli_are_ranked_by_their_mean_over_models(synthetic, by: str) -> None:
    consensus, predictions, models = synthetic
    table = disagreement_table(consensus, predictions, models, by=by)
    expected = loop_model_human(consensus, predictions)
    scores = {}
    for (stimulus_id, _), metrics in expected.items():
        scores.setdefault(stimulus_id, []).append(metrics[by])
    scores = {s: mean(v for v in values if not math.isnan(v)) if any(not math.isnan(v) for v in values) else math.nan
              for s, values in scores.items()}
    names = consensus.set_index("stimulus_id")["stimulus"]
    order = sorted(scores, key=lambda s: (math.isnan(scores[s]), -np.nan_to_num(scores[s]), names[s], s))
    assert table.drop_duplicates("stimulus_id")["stimulus_id"].tolist() == order
    first = table.drop_duplicates("stimulus_id")
    assert first["stimulus_disagreement"].tolist() == pytest.approx([scores[s] for s in order], nan_ok=True)
    # rank 1 is the largest; equal scores share the smaller rank
    for a, b in zip(first.itertuples(), first.iloc[1:].itertuples()):
        same = a.stimulus_disagreement == b.stimulus_disagreement or (
            math.isnan(a.stimulus_disagreement) and math.isnan(b.stimulus_disagreement))
        assert (b.rank == a.rank) if same else (b.rank > a.rank)
    assert first["rank"].iloc[0] == 1


def test_model_model_spread_equals_a_plain_loop(synthetic) -> None:
    consensus, predictions, models = synthetic
    table = disagreement_table(consensus, predictions, models, by="mean_pairwise_jsd").set_index("stimulus_id")
    for stimulus_id, rows in predictions.groupby("stimulus_id"):
        probs = [np.nan_to_num(r[[f"p_{label}" for label in LABELS]].to_numpy(float)) for _, r in rows.iterrows()]
        pairwise = [jensenshannon(probs[a], probs[b], base=2) ** 2
                    for a in range(len(probs)) for b in range(a + 1, len(probs))]
        labels = rows["label"].tolist()
        got = table.loc[stimulus_id]
        assert got["mean_pairwise_jsd"] == pytest.approx(mean(pairwise), abs=1e-12)
        assert got["valence_sd"] == pytest.approx(stdev(rows["valence"]), abs=1e-12)
        assert got["arousal_sd"] == pytest.approx(stdev(rows["arousal"]), abs=1e-12)
        assert got["distinct_label_share"] == pytest.approx(len(set(labels)) / len(labels))
    assert table["rank"].is_monotonic_increasing
    assert table["stimulus_disagreement"].is_monotonic_decreasing


def test_pipelines_are_members_through_their_mean_outputs(synthetic) -> None:
    consensus, predictions, models = synthetic
    table = disagreement_table(consensus, predictions, models, by="valence_sd", across="pipelines").set_index("stimulus_id")
    pipeline_of = dict(zip(models["model_id"], models["pipeline"]))
    for stimulus_id, rows in predictions.groupby("stimulus_id"):
        means = rows.assign(pipeline=rows["model_id"].map(pipeline_of)).groupby("pipeline")["valence"].mean()
        assert table.loc[stimulus_id, "n_members"] == len(means) == 3
        assert table.loc[stimulus_id, "valence_sd"] == pytest.approx(stdev(means), abs=1e-12)


def test_a_model_identical_to_the_human_consensus_has_no_disagreement(synthetic) -> None:
    consensus, predictions, _ = synthetic
    human = consensus.dropna(subset=["valence_mean", "arousal_mean"])
    mirror = pd.DataFrame({
        "stimulus": human["stimulus"], "stimulus_id": human["stimulus_id"], "model_id": "mirror",
        "label": human["majority_label"], "valence": human["valence_mean"], "arousal": human["arousal_mean"],
        **{f"p_{label}": human[f"share_{label}"] for label in LABELS},
    })
    table = disagreement_table(consensus, pd.concat([predictions, mirror]), None, by="jsd")
    own = table[table["model_id"] == "mirror"]
    assert len(own) == len(human)
    for metric in ("va_distance", "valence_abs_diff", "arousal_abs_diff", "jsd", "majority_mismatch"):
        values = own[metric].dropna()
        assert len(values) > 0 and (values.abs() < 1e-12).all(), metric
    # the mirror never disagrees, so its row comes last among the stimulus' models
    assert (table.groupby("stimulus_id")["model_id"].last() == "mirror").all()


def test_duplicated_models_have_no_spread(synthetic) -> None:
    consensus, predictions, _ = synthetic
    one = predictions[predictions["model_id"] == "model_0"]
    twins = pd.concat([one, one.assign(model_id="twin")])
    table = disagreement_table(consensus, twins, None, by="mean_pairwise_jsd")
    assert (table[["valence_sd", "arousal_sd", "mean_pairwise_jsd"]].abs() < 1e-12).all().all()
    assert (table["distinct_label_share"] == 0.5).all()


@SETTINGS
@given(st.integers(0, 3), st.randoms(use_true_random=False),
       st.sampled_from(MODEL_HUMAN_METRICS + MODEL_MODEL_METRICS), st.sampled_from(["models", "pipelines"]))
def test_ranking_ignores_the_order_of_input_rows(seed: int, random, by: str, across: str) -> None:
    consensus, predictions, models = study(seed=seed, n_stimuli=15, n_models=3, missing_share=0.3)
    # coarse values make exact ties in the scores common
    predictions = predictions.assign(valence=predictions["valence"].round(1), arousal=predictions["arousal"].round(1))
    expected = disagreement_table(consensus, predictions, models, by=by, across=across)

    def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
        order = list(range(len(frame)))
        random.shuffle(order)
        return frame.iloc[order]

    got = disagreement_table(shuffled(consensus), shuffled(predictions), shuffled(models), by=by, across=across)
    pd.testing.assert_frame_equal(got, expected)


def test_side_by_side_puts_every_model_beside_the_human_consensus(synthetic) -> None:
    consensus, predictions, models = synthetic
    ranking = disagreement_table(consensus, predictions, models, by="va_distance")
    wide = side_by_side(ranking, consensus, predictions)
    assert wide["stimulus_id"].tolist() == ranking.drop_duplicates("stimulus_id")["stimulus_id"].tolist()
    row = wide.iloc[0]
    prediction = predictions[(predictions["stimulus_id"] == row["stimulus_id"]) & (predictions["model_id"] == "model_1")].iloc[0]
    assert row["model_1 label"] == prediction["label"]
    assert row["model_1 p(label)"] == prediction[f"p_{prediction['label']}"]
    assert row["model_1 valence"] == prediction["valence"]
    human = consensus.set_index("stimulus_id").loc[row["stimulus_id"]]
    assert row["valence_sd"] == human["valence_sd"] and row["share_happiness"] == human["share_happiness"]


def test_filters_and_bad_arguments(synthetic) -> None:
    consensus, predictions, models = synthetic
    happy = consensus[consensus["majority_label"] == "happiness"]
    table = disagreement_table(happy, predictions, models[models["model_id"] == "model_2"], by="jsd")
    assert set(table["stimulus_id"]) == set(happy["stimulus_id"]) and set(table["model_id"]) == {"model_2"}
    assert table["rank"].max() <= len(happy)
    empty = disagreement_table(consensus, predictions.iloc[:0], models, by="jsd")
    assert empty.empty and "rank" in empty
    with pytest.raises(ValueError, match="by must be"):
        disagreement_table(consensus, predictions, models, by="nonsense")
    with pytest.raises(ValueError, match="across must be"):
        disagreement_table(consensus, predictions, models, by="valence_sd", across="raters")


def test_a_pipeline_with_tied_labels_gives_no_label() -> None:
    consensus, predictions, _ = study(n_stimuli=6, n_models=2, missing_share=0.0)
    models = pd.DataFrame({"model_id": ["model_0", "model_1"], "pipeline": ["A", "A"]})
    tied = predictions.assign(label=np.where(predictions["model_id"] == "model_0", "anger", "fear"))
    table = disagreement_table(consensus, tied, models, by="distinct_label_share", across="pipelines")
    assert (table["n_members"] == 1).all() and (table["n_labelled"] == 0).all()
    agreed = predictions.assign(label="fear")
    table = disagreement_table(consensus, agreed, models, by="distinct_label_share", across="pipelines")
    assert (table["n_labelled"] == 1).all() and table["distinct_label_share"].isna().all()
