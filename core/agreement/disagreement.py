"""Disagreement explorer: the stimuli models get most wrong, or disagree about most.

Model vs human (one row per stimulus x model), against the report's ``consensus`` table:
``valence_abs_diff`` / ``arousal_abs_diff`` (|model - human mean|), ``va_distance`` (Euclidean
distance in the valence-arousal plane), ``jsd`` (Jensen-Shannon divergence, base 2, 0..1,
between the model's probabilities and the human vote shares over the eight canonical labels; a
label the model cannot output has probability 0, as in scope "all" of ``model_labels``) and
``majority_mismatch`` / ``intended_mismatch`` (1 when the model's label differs from the human
majority / intended emotion, 0 when it matches, NaN without either label).

Model vs model (one row per stimulus): ``valence_sd`` / ``arousal_sd`` (SD, ddof=1, across
models, or across pipelines each represented by the mean of its models), ``distinct_label_share``
(distinct labels / labels given) and ``mean_pairwise_jsd`` of the probabilities.

Ranking: a stimulus' score is the value of the chosen metric (model vs human: its mean over the
stimulus' models, so a mismatch becomes the share of models that miss). Rank 1 is the largest
score; equal scores share a rank; missing scores come last. Rows are ordered by rank, then
stimulus name and id, then model, so the result never depends on the order of the input rows.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from core.agreement.categorical import jensen_shannon
from core.agreement.data import DIMENSIONS, LABELS

MODEL_HUMAN_METRICS: tuple[str, ...] = (
    "va_distance", "valence_abs_diff", "arousal_abs_diff", "jsd", "majority_mismatch", "intended_mismatch",
)
MODEL_MODEL_METRICS: tuple[str, ...] = ("valence_sd", "arousal_sd", "distinct_label_share", "mean_pairwise_jsd")
ACROSS: tuple[str, ...] = ("models", "pipelines")
UNKNOWN_PIPELINE = "unknown"
PROBABILITIES = [f"p_{label}" for label in LABELS]
SHARES = [f"share_{label}" for label in LABELS]
HUMAN_COLUMNS = [
    "stimulus_id", "stimulus", "majority_label", "majority_share", "intended_emotion",
    "valence_mean", "valence_sd", "arousal_mean", "arousal_sd", *SHARES,
]


def disagreement_table(
    consensus: pd.DataFrame,
    predictions: pd.DataFrame,
    models: pd.DataFrame | None = None,
    *,
    by: str = "va_distance",
    across: str = "models",
) -> pd.DataFrame:
    """Stimuli ranked by disagreement ``by`` (one of ``MODEL_HUMAN_METRICS`` or
    ``MODEL_MODEL_METRICS``), largest first.

    ``consensus``: the report's per-stimulus human table (``core.agreement.human_consensus``);
    only its stimuli are ranked, so filter it (emotion, subgroup) to rank within a selection.
    ``predictions``: as ``db.analysis.load_predictions``. ``models``: model_id and pipeline of
    the models to include (``None``: every model in ``predictions``, pipeline "unknown").
    ``across``: the members of a model-vs-model spread, ``"models"`` or ``"pipelines"``.

    Model vs human columns: rank, stimulus_id, stimulus, model_id, pipeline, disagreement (the
    row's ``by``), stimulus_disagreement (the stimulus' score), human_majority,
    intended_emotion, model_label, valence_human, valence_model, valence_abs_diff,
    arousal_human, arousal_model, arousal_abs_diff, va_distance, jsd, majority_mismatch,
    intended_mismatch. Model vs model columns: rank, stimulus_id, stimulus,
    stimulus_disagreement, human_majority, intended_emotion, n_members, n_labelled,
    n_distinct_labels, and the four metrics.
    """
    if across not in ACROSS:
        raise ValueError(f"across must be one of {ACROSS}, got {across!r}")
    outputs = _model_outputs(consensus, predictions, models)
    if by in MODEL_HUMAN_METRICS:
        return _model_human(consensus, outputs, by)
    if by in MODEL_MODEL_METRICS:
        members = _pipeline_means(outputs) if across == "pipelines" else outputs.rename(columns={"model_id": "member"})
        return _model_model(consensus, members, by)
    raise ValueError(f"by must be one of {MODEL_HUMAN_METRICS + MODEL_MODEL_METRICS}, got {by!r}")


def side_by_side(ranking: pd.DataFrame, consensus: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per ranked stimulus, in rank order: the human consensus (majority, vote shares,
    V/A mean and SD) and every model's output (``<model> label``, ``<model> p(label)``,
    ``<model> valence``, ``<model> arousal``) side by side. ``ranking``: a
    :func:`disagreement_table`; models are those of ``ranking`` when it has a model column."""
    stimuli = ranking.drop_duplicates("stimulus_id")[["rank", "stimulus_id", "stimulus_disagreement"]]
    wide = stimuli.merge(consensus[HUMAN_COLUMNS], on="stimulus_id", how="left")
    outputs = predictions[predictions["stimulus_id"].isin(stimuli["stimulus_id"])]
    if "model_id" in ranking:
        outputs = outputs[outputs["model_id"].isin(ranking["model_id"])]
    for model_id, rows in sorted(outputs.groupby("model_id"), key=lambda item: str(item[0])):
        own = rows.drop_duplicates("stimulus_id").set_index("stimulus_id")
        label_p = _probability_of_label(own)
        columns = pd.DataFrame({
            f"{model_id} label": own["label"], f"{model_id} p(label)": label_p,
            f"{model_id} valence": own["valence"], f"{model_id} arousal": own["arousal"],
        })
        wide = wide.merge(columns, left_on="stimulus_id", right_index=True, how="left")
    return wide.reset_index(drop=True)


def _model_outputs(consensus: pd.DataFrame, predictions: pd.DataFrame, models: pd.DataFrame | None) -> pd.DataFrame:
    """Predictions of the chosen models on the consensus' stimuli, with pipelines, sorted."""
    if models is None:
        pipelines = {m: UNKNOWN_PIPELINE for m in predictions["model_id"].unique()}
    else:
        pipelines = dict(zip(models["model_id"], models["pipeline"].fillna(UNKNOWN_PIPELINE).astype(str)))
    chosen = predictions[
        predictions["model_id"].isin(list(pipelines)) & predictions["stimulus_id"].isin(consensus["stimulus_id"])
    ]
    chosen = chosen.drop(columns=["stimulus"], errors="ignore").assign(
        pipeline=lambda frame: frame["model_id"].map(pipelines)
    )
    # Sorted first: sums over a stimulus' models then run in one order, whatever the input order.
    return chosen.sort_values(["stimulus_id", "model_id"], kind="stable").reset_index(drop=True)


def _model_human(consensus: pd.DataFrame, outputs: pd.DataFrame, by: str) -> pd.DataFrame:
    rows = outputs.merge(consensus[HUMAN_COLUMNS], on="stimulus_id", how="inner")
    table = pd.DataFrame({
        "stimulus_id": rows["stimulus_id"], "stimulus": rows["stimulus"], "model_id": rows["model_id"],
        "pipeline": rows["pipeline"], "human_majority": rows["majority_label"],
        "intended_emotion": rows["intended_emotion"], "model_label": rows["label"],
    })
    for dimension in DIMENSIONS:
        table[f"{dimension}_human"] = rows[f"{dimension}_mean"].astype(float)
        table[f"{dimension}_model"] = rows[dimension].astype(float)
        table[f"{dimension}_abs_diff"] = (table[f"{dimension}_model"] - table[f"{dimension}_human"]).abs()
    table["va_distance"] = np.hypot(table["valence_abs_diff"], table["arousal_abs_diff"])
    table["jsd"] = _divergence_to_votes(rows)
    table["majority_mismatch"] = _mismatch(table["model_label"], table["human_majority"])
    table["intended_mismatch"] = _mismatch(table["model_label"], table["intended_emotion"])
    table.insert(5, "disagreement", table[by])
    scores = table.groupby("stimulus_id", sort=True)["disagreement"].mean()
    table.insert(6, "stimulus_disagreement", table["stimulus_id"].map(scores))
    return _ranked(table, extra_order=("disagreement", "model_id"), extra_ascending=(False, True))


def _model_model(consensus: pd.DataFrame, members: pd.DataFrame, by: str) -> pd.DataFrame:
    spreads = []
    for stimulus_id, rows in members.groupby("stimulus_id", sort=True):
        spreads.append({"stimulus_id": stimulus_id, **_spread(rows)})
    columns = ["stimulus_id", "n_members", "n_labelled", "n_distinct_labels", *MODEL_MODEL_METRICS]
    table = pd.DataFrame(spreads, columns=columns)
    human = consensus[["stimulus_id", "stimulus", "majority_label", "intended_emotion"]]
    table = human.merge(table, on="stimulus_id", how="inner").rename(columns={"majority_label": "human_majority"})
    table["stimulus_disagreement"] = table[by].astype(float)
    order = ["rank", "stimulus_id", "stimulus", "stimulus_disagreement", "human_majority", "intended_emotion"]
    return _ranked(table)[order + columns[1:]]


def _spread(rows: pd.DataFrame) -> dict[str, float]:
    """Spread of one stimulus' members (models or pipelines)."""
    labels = rows["label"].dropna()
    probabilities = rows[PROBABILITIES].to_numpy(float)
    probabilities = np.nan_to_num(probabilities[np.isfinite(probabilities).any(axis=1)])
    pairs = list(combinations(range(len(probabilities)), 2))
    divergences = jensen_shannon(probabilities[[a for a, _ in pairs]], probabilities[[b for _, b in pairs]]) if pairs else []
    return {
        "n_members": len(rows), "n_labelled": len(labels), "n_distinct_labels": labels.nunique(),
        "valence_sd": rows["valence"].std(ddof=1), "arousal_sd": rows["arousal"].std(ddof=1),
        "distinct_label_share": labels.nunique() / len(labels) if len(labels) > 1 else np.nan,
        "mean_pairwise_jsd": float(np.mean(divergences)) if pairs else np.nan,
    }


def _pipeline_means(outputs: pd.DataFrame) -> pd.DataFrame:
    """One member per stimulus and pipeline: mean V/A and probabilities of its models, and the
    most common label of its models (none on a tie: ties are never broken by label order)."""
    grouped = outputs.groupby(["stimulus_id", "pipeline"], sort=True)
    means = grouped[["valence", "arousal", *PROBABILITIES]].mean()
    means["label"] = grouped["label"].agg(_untied_mode)
    return means.reset_index().rename(columns={"pipeline": "member"})


def _untied_mode(labels: pd.Series) -> str | None:
    counts = labels.dropna().value_counts()
    if counts.empty or (len(counts) > 1 and counts.iloc[0] == counts.iloc[1]):
        return None
    return str(counts.index[0])


def _divergence_to_votes(rows: pd.DataFrame) -> np.ndarray:
    """JSD per row between the model's probabilities (missing labels as 0) and the vote shares;
    NaN where the model gives no probabilities or the stimulus has no votes."""
    probabilities = rows[PROBABILITIES].to_numpy(float)
    shares = rows[SHARES].to_numpy(float)
    scored = np.isfinite(probabilities).any(axis=1) & np.isfinite(shares).all(axis=1) & (np.nansum(shares, axis=1) > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        divergence = jensen_shannon(np.nan_to_num(shares), np.nan_to_num(probabilities))
    return np.where(scored, divergence, np.nan)


def _mismatch(predicted: pd.Series, reference: pd.Series) -> pd.Series:
    both = predicted.notna() & reference.notna()
    return pd.Series(np.where(both, (predicted != reference).astype(float), np.nan), index=predicted.index)


def _probability_of_label(outputs: pd.DataFrame) -> pd.Series:
    """The probability each output gives its own label (NaN without a label or probabilities)."""
    values = outputs[PROBABILITIES].to_numpy(float)
    codes = pd.Index(LABELS).get_indexer(outputs["label"].astype(object))
    picked = values[np.arange(len(values)), np.maximum(codes, 0)] if len(values) else np.zeros(0)
    return pd.Series(np.where(codes >= 0, picked, np.nan), index=outputs.index)


def _ranked(
    table: pd.DataFrame, extra_order: tuple[str, ...] = (), extra_ascending: tuple[bool, ...] = ()
) -> pd.DataFrame:
    """Rank stimuli by ``stimulus_disagreement`` (1 = largest, ties share the smallest rank,
    missing last) and order rows deterministically."""
    per_stimulus = table.drop_duplicates("stimulus_id").set_index("stimulus_id")["stimulus_disagreement"]
    ranks = per_stimulus.rank(method="min", ascending=False, na_option="bottom").astype(int)
    table = table.assign(rank=table["stimulus_id"].map(ranks))
    ordered = table.sort_values(
        ["rank", "stimulus", "stimulus_id", *extra_order],
        ascending=[True, True, True, *extra_ascending], na_position="last", kind="stable",
    )
    lead = ["rank", "stimulus_id", "stimulus"]
    return ordered[lead + [c for c in ordered.columns if c not in lead]].reset_index(drop=True)
