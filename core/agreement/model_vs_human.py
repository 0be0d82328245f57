"""Model vs human consensus (and vs the intended emotion).

Valence/arousal: each model against the mean human rating per stimulus (CCC, Pearson r, RMSE,
MAE, mean bias). Labels: against the human majority label (ties per the tie policy; unresolved
ties are left out and counted in ``n_excluded``) and against the stimulus' intended emotion.

Labels a model cannot output (contempt for 7-class models) get two scopes, always both shown:
- ``scope="all"``: every stimulus with a reference label; a reference the model cannot output
  counts as an error (probability 0 on it). This is the model's real-world score.
- ``scope="outputtable"``: only stimuli whose reference label the model can output. This is the
  fair comparison of what it was trained to do. ``n_excluded`` says how many were left out.
Jensen-Shannon divergence to the human vote distribution: in scope "all" over the eight
canonical labels (the model's probability of a label it cannot output is 0); in scope
"outputtable" both distributions are renormalised over the model's own labels (stimuli with no
human vote on those labels are left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, Estimate, estimates_frame
from core.agreement.categorical import (
    LABEL_METRICS,
    confusion_contributions,
    confusion_statistics,
    jensen_shannon,
)
from core.agreement.consensus import human_means, majority_codes
from core.agreement.continuous import CONTINUOUS_METRICS, moment_statistics, paired_moments
from core.agreement.data import DIMENSIONS, LABELS, N_LABELS, StudyData

REFERENCES = ("human_majority", "intended")
SCOPES = ("all", "outputtable")
NO_PROBABILITIES = "the model gives no class probabilities"
NO_LABELS = "the model gives no emotion labels: label metrics are undefined"
K2 = N_LABELS * N_LABELS


@dataclass(frozen=True)
class Predictors:
    """Label predictors scored against a reference: models, or the human majority."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    pipelines: tuple[str, ...]
    codes: np.ndarray  # (P, N)
    probs: np.ndarray  # (P, N, K), NaN where not given
    can_output: np.ndarray  # (P, K)

    def info(self, p: int) -> dict[str, str]:
        return {"model_id": self.ids[p], "model_name": self.names[p], "pipeline": self.pipelines[p]}


def model_predictors(data: StudyData) -> Predictors:
    return Predictors(data.model_ids, data.model_names, data.pipelines, data.model_labels,
                      data.model_probs, data.can_output)


def human_majority_predictor(data: StudyData, ties: str) -> Predictors:
    """The human majority label as one predictor; its 'probabilities' are the vote shares."""
    counts = data.vote_counts()
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / counts.sum(axis=1, keepdims=True)
    return Predictors(("human_majority",), ("human majority",), ("human",),
                      reference_codes(data, "human_majority", ties)[None], shares[None],
                      np.ones((1, N_LABELS), bool))


def reference_codes(data: StudyData, reference: str, ties: str = "none") -> np.ndarray:
    """Reference label code per stimulus (-1 where there is none)."""
    if reference == "human_majority":
        return majority_codes(data.vote_counts(), ties, data.intended)[0]
    if reference == "intended":
        return data.intended
    raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")


# --- valence and arousal --------------------------------------------------------------------

def continuous_estimates(
    data: StudyData, boot: Bootstrap, mask: np.ndarray | None = None,
    metrics: tuple[str, ...] = CONTINUOUS_METRICS,
) -> list[Estimate]:
    """Every model's V/A agreement with the human mean rating, as estimates with replicates."""
    estimates = []
    if data.n_models == 0:
        return estimates
    predictors = model_predictors(data)
    for dimension in DIMENSIONS:
        predicted = data.model(dimension).T
        reference = np.broadcast_to(human_means(data, dimension)[:, None], predicted.shape)
        point, reps = boot.evaluate(paired_moments(predicted, reference), moment_statistics, mask)
        for m in range(data.n_models):
            for metric in metrics:
                estimates.append(Estimate(
                    {**predictors.info(m), "dimension": dimension, "reference": "human_mean",
                     "metric": metric},
                    point[metric][m], reps[metric][:, m], int(point["n"][m]),
                ))
    return estimates


def model_vs_human_continuous(data: StudyData, boot: Bootstrap) -> pd.DataFrame:
    """V/A agreement of every model with the human mean rating.

    Columns: model_id, model_name, pipeline, dimension, reference ("human_mean"), metric
    (ccc | pearson_r | rmse | mae | mean_bias), estimate, ci_low, ci_high, n, ci_method.
    """
    return estimates_frame(continuous_estimates(data, boot), boot)


# --- labels ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelResult:
    metrics: list[Estimate]
    recall: list[Estimate]
    confusion: np.ndarray  # (P, K, K) full-sample counts, scope "all"


def label_estimates(
    predictors: Predictors, truth: np.ndarray, reference: str, boot: Bootstrap,
    mask: np.ndarray | None = None, vote_shares: np.ndarray | None = None,
    metrics: tuple[str, ...] = LABEL_METRICS + ("mean_p_reference", "jsd"),
) -> LabelResult:
    """Accuracy, macro-F1, kappa, per-emotion recall, mean probability on the reference label
    and (with ``vote_shares``) JSD to the human vote distribution, in both scopes."""
    if mask is not None:
        truth = np.where(mask, truth, -1)
    codes = predictors.codes
    outputtable = np.take_along_axis(
        predictors.can_output, np.broadcast_to(np.maximum(truth, 0), codes.shape), axis=1
    ) & (truth >= 0)
    # Summed apart: the confusion cells are counts (exact single-precision product).
    counted = boot.sums(confusion_contributions(truth[:, None], codes.T, N_LABELS), mask)
    weighed = boot.sums(_probability_contributions(predictors, truth, outputtable, vote_shares), mask)
    point, reps = (np.concatenate(pair, axis=-1) for pair in zip(counted, weighed))
    rows = predictors.can_output[:, :, None]
    confusion = {"all": point[:, :K2].reshape(-1, N_LABELS, N_LABELS)}
    confusion["outputtable"] = confusion["all"] * rows
    classes = {scope: (c.sum(axis=-1) + c.sum(axis=-2)) > 0 for scope, c in confusion.items()}

    def statistic(sums: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
        table = sums[..., :K2].reshape(sums.shape[:-1] + (N_LABELS, N_LABELS))
        extra = sums[..., K2:]
        out = {}
        for scope, scoped in (("all", table), ("outputtable", table * rows)):
            result = confusion_statistics(scoped, classes[scope])
            for name in ("accuracy", "macro_f1", "cohen_kappa", "recall", "n"):
                out[scope, name] = result[name]
            offset = 0 if scope == "all" else 2
            out[scope, "mean_p_reference"] = extra[..., offset + 1] / extra[..., offset]
            out[scope, "n_p"] = extra[..., offset]
            out[scope, "jsd"] = extra[..., offset + 5] / extra[..., offset + 4]
            out[scope, "n_jsd"] = extra[..., offset + 4]
        return out

    with np.errstate(invalid="ignore", divide="ignore"):
        point_stats, rep_stats = statistic(point), statistic(reps)
    excluded = _exclusions(codes, truth, outputtable, mask)
    has_probs = np.isfinite(predictors.probs).any(axis=(1, 2))
    estimates, recalls = [], []
    labelled = (codes >= 0).any(axis=1)
    for p in range(len(predictors.ids)):
        notes = _scope_notes(predictors.can_output[p], excluded["unoutputtable"][p]) if labelled[p] \
            else dict.fromkeys(SCOPES, NO_LABELS)
        for scope in SCOPES:
            info = {"n_excluded": int(excluded[scope][p]), "note": notes[scope]}
            keys = {**predictors.info(p), "reference": reference, "scope": scope}
            for metric in metrics:
                if metric == "jsd" and vote_shares is None:
                    continue
                n_key = {"mean_p_reference": "n_p", "jsd": "n_jsd"}.get(metric, "n")
                note = info if n_key == "n" or has_probs[p] else {
                    **info, "note": "; ".join(filter(None, [info["note"], NO_PROBABILITIES]))}
                estimates.append(Estimate(
                    {**keys, "metric": metric}, point_stats[scope, metric][p],
                    rep_stats[scope, metric][:, p], int(point_stats[scope, n_key][p]), note,
                ))
            recalls += _recall_estimates(p, keys, scope, point_stats, rep_stats, predictors,
                                         confusion[scope][p], labelled[p])
    return LabelResult(estimates, recalls, confusion["all"])


def _probability_contributions(
    predictors: Predictors, truth: np.ndarray, outputtable: np.ndarray,
    vote_shares: np.ndarray | None,
) -> np.ndarray:
    """(N, P, 8): [n, p on reference] for both scopes, then [n, JSD] for both scopes."""
    probs = predictors.probs
    has_probs = np.isfinite(probs).any(axis=-1)
    filled = np.nan_to_num(probs)
    on_reference = np.take_along_axis(
        filled, np.broadcast_to(np.maximum(truth, 0)[None, :, None], filled.shape[:2] + (1,)), axis=-1
    )[..., 0]
    scored = has_probs & (truth >= 0)
    parts = [scored, scored * on_reference, scored & outputtable, (scored & outputtable) * on_reference]
    if vote_shares is None:
        parts += [np.zeros_like(on_reference)] * 4
    else:
        voted = np.isfinite(vote_shares).all(axis=-1) & (np.nan_to_num(vote_shares).sum(-1) > 0)
        scope_all = has_probs & voted[None] & (truth >= 0)
        divergence_all = jensen_shannon(np.nan_to_num(vote_shares)[None], filled)
        own = predictors.can_output[:, None, :]
        human_own = np.nan_to_num(vote_shares)[None] * own
        scope_out = scope_all & (human_own.sum(axis=-1) > 0)
        divergence_out = jensen_shannon(human_own, filled * own)
        parts += [scope_all, np.where(scope_all, divergence_all, 0.0),
                  scope_out, np.where(scope_out, divergence_out, 0.0)]
    return np.stack([np.asarray(x, float) for x in parts], axis=-1).transpose(1, 0, 2)


def _exclusions(codes, truth, outputtable, mask) -> dict[str, np.ndarray]:
    predicted = codes >= 0
    if mask is not None:
        predicted = predicted & mask
    return {
        "all": (predicted & (truth < 0)).sum(axis=1),
        "unoutputtable": (predicted & (truth >= 0) & ~outputtable).sum(axis=1),
        "outputtable": (predicted & ((truth < 0) | ~outputtable)).sum(axis=1),
    }


def _scope_notes(can_output: np.ndarray, n_unoutputtable: int) -> dict[str, str]:
    if can_output.all():
        return {"all": "", "outputtable": "model outputs every canonical label: scopes coincide"}
    missing = ", ".join(np.array(LABELS)[~can_output])
    return {
        "all": f"{n_unoutputtable} stimuli have a reference label the model cannot output "
               f"({missing}); scored as errors",
        "outputtable": f"{n_unoutputtable} stimuli with a reference label the model cannot "
                       f"output ({missing}) left out",
    }


def _recall_estimates(p, keys, scope, point_stats, rep_stats, predictors, confusion,
                      labelled: bool) -> list[Estimate]:
    recalls = []
    support = confusion.sum(axis=1)
    for k, label in enumerate(LABELS):
        able = bool(predictors.can_output[p, k])
        if scope == "outputtable" and not able:
            continue
        note = "" if able else "model cannot output this label: recall is 0 by construction"
        recalls.append(Estimate(
            {**keys, "emotion": label}, point_stats[scope, "recall"][p, k],
            rep_stats[scope, "recall"][:, p, k], int(support[k]),
            {"note": note if labelled else NO_LABELS},
        ))
    return recalls


def label_tables(data: StudyData, boot: Bootstrap, ties: str = "none") -> dict[str, pd.DataFrame]:
    """Label metrics, per-emotion recall and confusion of every model vs both references, and
    of the human majority vs the intended emotion (pipeline "human" in recall/confusion)."""
    counts = data.vote_counts()
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / counts.sum(axis=1, keepdims=True)
    metrics, recalls, confusions = [], [], []
    runs = [(model_predictors(data), "human_majority", shares)] if data.n_models else []
    if (data.intended >= 0).any():
        if data.n_models:
            runs.append((model_predictors(data), "intended", None))
        runs.append((human_majority_predictor(data, ties), "intended", None))
    human_rows = []
    for predictors, reference, vote_shares in runs:
        result = label_estimates(predictors, reference_codes(data, reference, ties), reference,
                                 boot, vote_shares=vote_shares)
        target = human_rows if predictors.pipelines == ("human",) else metrics
        target += result.metrics
        recalls += result.recall
        confusions.append(_confusion_frame(predictors, reference, result.confusion))
    return {
        "model_labels": estimates_frame(metrics, boot),
        "human_vs_intended": estimates_frame(human_rows, boot),
        "recall": estimates_frame(recalls, boot),
        "confusion": pd.concat(confusions, ignore_index=True) if confusions else _empty_confusion(),
    }


def _confusion_frame(predictors: Predictors, reference: str, counts: np.ndarray) -> pd.DataFrame:
    true_idx, predicted_idx = np.meshgrid(np.arange(N_LABELS), np.arange(N_LABELS), indexing="ij")
    parts = []
    for p in range(len(predictors.ids)):
        totals = counts[p].sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(totals > 0, counts[p] / totals, np.nan)
        parts.append(pd.DataFrame({
            **predictors.info(p), "reference": reference,
            "true_label": np.array(LABELS)[true_idx.ravel()],
            "predicted_label": np.array(LABELS)[predicted_idx.ravel()],
            "count": counts[p].ravel().astype(int),
            "row_total": np.repeat(totals.ravel(), N_LABELS).astype(int),
            "share": share.ravel(),
            "model_can_output_true_label": np.repeat(predictors.can_output[p], N_LABELS),
        }))
    return pd.concat(parts, ignore_index=True)


def _empty_confusion() -> pd.DataFrame:
    return pd.DataFrame(columns=["model_id", "model_name", "pipeline", "reference", "true_label",
                                 "predicted_label", "count", "row_total", "share",
                                 "model_can_output_true_label"])


def model_vs_human_labels(data: StudyData, boot: Bootstrap, ties: str = "none") -> pd.DataFrame:
    """Label agreement of every model with the human majority and the intended emotion.

    Columns: model_id, model_name, pipeline, reference (human_majority | intended), scope
    (all | outputtable), metric (accuracy | macro_f1 | cohen_kappa | mean_p_reference | jsd),
    estimate, ci_low, ci_high, n, n_excluded, note, ci_method.
    """
    return label_tables(data, boot, ties)["model_labels"]


def per_emotion_recall(data: StudyData, boot: Bootstrap, ties: str = "none") -> pd.DataFrame:
    """Recall per reference emotion. Columns: model_id, model_name, pipeline, reference, scope,
    emotion, estimate, ci_low, ci_high, n (stimuli with that reference label), note, ci_method."""
    return label_tables(data, boot, ties)["recall"]


def confusion_table(data: StudyData, ties: str = "none") -> pd.DataFrame:
    """Confusion counts and row-normalised shares (rows = reference label), long form.

    Columns: model_id, model_name, pipeline, reference, true_label, predicted_label, count,
    row_total, share, model_can_output_true_label.
    """
    return label_tables(data, Bootstrap(n_boot=0), ties)["confusion"]
