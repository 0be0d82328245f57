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


# What each ranking reads: groups of consensus or prediction columns, each met when any of its
# columns holds a value. A ranking whose inputs are empty in a study (valence on a labels-only
# study) ranks nothing.
METRIC_INPUTS: dict[str, tuple[list[str], ...]] = {
    "va_distance": (["valence_mean"], ["arousal_mean"], ["valence"], ["arousal"]),
    "valence_abs_diff": (["valence_mean"], ["valence"]),
    "arousal_abs_diff": (["arousal_mean"], ["arousal"]),
    "jsd": (SHARES, PROBABILITIES),
    "majority_mismatch": (["majority_label"], ["label"]),
    "intended_mismatch": (["intended_emotion"], ["label"]),
    "valence_sd": (["valence"],),
    "arousal_sd": (["arousal"],),
    "distinct_label_share": (["label"],),
    "mean_pairwise_jsd": (PROBABILITIES,),
}


def metrics_with_values(consensus: pd.DataFrame, predictions: pd.DataFrame) -> set[str]:
    """The rankings whose inputs hold at least one value (see ``METRIC_INPUTS``)."""
    needed = {column for groups in METRIC_INPUTS.values() for group in groups for column in group}
    filled = {column for frame in (consensus, predictions) for column in needed & set(frame.columns)
              if frame[column].notna().any()}
    return {metric for metric, groups in METRIC_INPUTS.items()
            if all(filled & set(group) for group in groups)}


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
        outputs = outputs[outputs["model_id"].isin(ranking["model_id"].unique())]
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
    columns = ["stimulus_id", "n_members", "n_labelled", "n_distinct_labels", *MODEL_MODEL_METRICS]
    table = _spreads(members)[columns]
    human = consensus[["stimulus_id", "stimulus", "majority_label", "intended_emotion"]]
    table = human.merge(table, on="stimulus_id", how="inner").rename(columns={"majority_label": "human_majority"})
    table["stimulus_disagreement"] = table[by].astype(float)
    order = ["rank", "stimulus_id", "stimulus", "stimulus_disagreement", "human_majority", "intended_emotion"]
    return _ranked(table)[order + columns[1:]]


def _spreads(members: pd.DataFrame) -> pd.DataFrame:
    """Spread of each stimulus' members (models or pipelines), on stimuli x members arrays."""
    stimulus_ids, rows = np.unique(members["stimulus_id"].to_numpy(), return_inverse=True)
    _, columns = np.unique(members["member"].astype(str).to_numpy(), return_inverse=True)
    shape = (len(stimulus_ids), columns.max(initial=-1) + 1)
    frame = pd.DataFrame({"stimulus_id": stimulus_ids, "n_members": np.bincount(rows, minlength=shape[0])})
    for dimension in DIMENSIONS:
        values = np.full(shape, np.nan)
        values[rows, columns] = members[dimension].to_numpy(float)
        frame[f"{dimension}_sd"] = _sd(values)
    codes = pd.Index(LABELS).get_indexer(members["label"].astype(object))
    votes = np.zeros((shape[0], len(LABELS)), int)
    np.add.at(votes, (rows[codes >= 0], codes[codes >= 0]), 1)
    frame["n_labelled"] = votes.sum(axis=1)
    frame["n_distinct_labels"] = (votes > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["distinct_label_share"] = np.where(
            frame["n_labelled"] > 1, frame["n_distinct_labels"] / frame["n_labelled"], np.nan)
    probabilities = np.full((*shape, len(LABELS)), np.nan)
    probabilities[rows, columns] = members[PROBABILITIES].to_numpy(float)
    frame["mean_pairwise_jsd"] = _mean_pairwise_jsd(probabilities)
    return frame


def _sd(values: np.ndarray) -> np.ndarray:
    """SD (ddof=1) of each row's finite values; NaN with fewer than two."""
    n = np.isfinite(values).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = values - np.nansum(values, axis=1, keepdims=True) / n[:, None]
        return np.where(n > 1, np.sqrt(np.nansum(centred**2, axis=1) / (n - 1)), np.nan)


def _mean_pairwise_jsd(probabilities: np.ndarray) -> np.ndarray:
    """Mean JSD over pairs of members with probabilities (missing labels as 0); NaN under two."""
    given = np.isfinite(probabilities).any(axis=-1)
    filled = np.nan_to_num(probabilities)
    total = np.zeros(len(probabilities))
    pairs = np.zeros(len(probabilities))
    for a, b in combinations(range(probabilities.shape[1]), 2):
        both = given[:, a] & given[:, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            divergence = jensen_shannon(filled[:, a], filled[:, b])
        total += np.where(both, divergence, 0.0)
        pairs += both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, total / pairs, np.nan)


def _pipeline_means(outputs: pd.DataFrame) -> pd.DataFrame:
    """One member per stimulus and pipeline: mean V/A and probabilities of its models, and the
    most common label of its models (none on a tie: ties are never broken by label order)."""
    keys = ["stimulus_id", "pipeline"]
    means = outputs.groupby(keys, sort=True)[["valence", "arousal", *PROBABILITIES]].mean()
    counts = outputs.dropna(subset=["label"]).groupby([*keys, "label"]).size().rename("n").reset_index()
    top = counts[counts["n"] == counts.groupby(keys)["n"].transform("max")]
    untied = top[top.groupby(keys)["n"].transform("size") == 1]
    means["label"] = untied.set_index(keys)["label"].reindex(means.index).astype(object)
    return means.reset_index().rename(columns={"pipeline": "member"})


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
