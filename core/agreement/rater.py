"""The model as one more rater: its leave-one-out score among the humans', and panel changes.

A human's leave-one-out score compares them with the mean (V/A) or majority (labels) of the
other humans; a model's compares it with the mean or majority of all humans (the model is the
one left out). Its percentile is the share of human raters scoring below it (ties count half),
computed in every bootstrap resample too, so it has a CI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap
from core.agreement.categorical import agreement_contributions, agreement_statistics
from core.agreement.consensus import human_means
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import LABELS, N_LABELS, StudyData
from core.agreement.model_vs_human import NO_LABELS, reference_codes
from core.agreement.reliability import (
    LOO_METRICS,
    AlphaParts,
    LeaveOneOut,
    alpha_of_parts,
    alpha_parts,
    icc_contributions,
    icc_label,
    icc_matrix,
    icc_mean_squares,
    icc_values,
    loo_scores,
    with_rater,
)

ICC_PANEL_FORM = "ICC(A,1)"


def percentile_of(score: np.ndarray, humans: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of ``score`` (...,) among ``humans`` (..., R); NaN humans ignored."""
    valid = np.isfinite(humans)
    below = ((humans < score[..., None]) & valid).sum(axis=-1)
    equal = ((humans == score[..., None]) & valid).sum(axis=-1)
    count = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = 100 * (below + 0.5 * equal) / count
    return np.where((count > 0) & np.isfinite(score), result, np.nan)


def _model_scores(data: StudyData, boot: Bootstrap, ties: str):
    """Each model vs all humans: {(dimension, metric): (point (M,), replicates (B, M), n (M,))}."""
    scores = {}
    for dimension in ("valence", "arousal"):
        predicted = data.model(dimension).T
        reference = np.broadcast_to(human_means(data, dimension)[:, None], predicted.shape)
        point, reps = boot.evaluate(paired_moments(predicted, reference), moment_statistics)
        for metric in LOO_METRICS[dimension]:
            scores[dimension, metric] = (point[metric], reps[metric], point["n"])
    majority = reference_codes(data, "human_majority", ties)
    contributions = agreement_contributions(data.model_labels.T, majority[:, None], N_LABELS)
    point, reps = boot.evaluate(contributions, lambda s: agreement_statistics(s, N_LABELS))
    for metric in LOO_METRICS["emotion"]:
        scores["emotion", metric] = (point[metric], reps[metric], point["n"])
    return scores


def model_as_rater(
    data: StudyData, boot: Bootstrap, ties: str = "none", loo: LeaveOneOut | None = None
) -> pd.DataFrame:
    """Each model's leave-one-out score and its percentile among the human raters' scores.

    Columns: model_id, model_name, pipeline, dimension, metric, estimate, ci_low, ci_high, n,
    percentile, percentile_ci_low, percentile_ci_high, human_median, human_q25, human_q75,
    human_min, human_max, n_raters, note, ci_method.
    """
    loo = loo or loo_scores(data, boot, ties)
    rows = []
    for (dimension, metric), (point, reps, n) in _model_scores(data, boot, ties).items():
        humans = np.where(loo.n[dimension, metric] > 0, loo.point[dimension, metric], np.nan)
        human_reps = np.where(loo.n[dimension, metric] > 0, loo.replicates[dimension, metric], np.nan)
        low, high = boot.interval(reps)
        pct_low, pct_high = boot.interval(percentile_of(reps, human_reps[:, None, :]))
        pct = percentile_of(point, np.broadcast_to(humans, point.shape + humans.shape))
        quartiles = _quantiles(humans)
        for m in range(data.n_models):
            rows.append({
                "model_id": data.model_ids[m], "model_name": data.model_names[m],
                "pipeline": data.pipelines[m], "dimension": dimension, "metric": metric,
                "estimate": point[m], "ci_low": low[m], "ci_high": high[m], "n": int(n[m]),
                "percentile": pct[m], "percentile_ci_low": pct_low[m],
                "percentile_ci_high": pct_high[m], **quartiles,
                "n_raters": int(np.isfinite(humans).sum()),
                "note": _label_note(data, m, ties) if dimension == "emotion" else "",
                "ci_method": boot.ci_method,
            })
    return pd.DataFrame(rows)


def _quantiles(humans: np.ndarray) -> dict[str, float]:
    finite = humans[np.isfinite(humans)]
    if not finite.size:
        return dict.fromkeys(["human_median", "human_q25", "human_q75", "human_min", "human_max"], np.nan)
    q25, median, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
    return {"human_median": median, "human_q25": q25, "human_q75": q75,
            "human_min": finite.min(), "human_max": finite.max()}


def _label_note(data: StudyData, m: int, ties: str) -> str:
    if not (data.model_labels[m] >= 0).any():
        return NO_LABELS
    if data.can_output[m].all():
        return ""
    majority = reference_codes(data, "human_majority", ties)
    scored = (majority >= 0) & (data.model_labels[m] >= 0)
    cannot = scored & ~data.can_output[m][np.maximum(majority, 0)]
    missing = ", ".join(np.array(LABELS)[~data.can_output[m]])
    return (f"{int(cannot.sum())} stimuli whose human majority the model cannot output "
            f"({missing}) count as disagreements, as they would for a human rater")


def human_ceiling(data: StudyData, boot: Bootstrap, ties: str = "none",
                  loo: LeaveOneOut | None = None) -> pd.DataFrame:
    """The human yardstick: median leave-one-out score over raters, with a bootstrap CI.

    Columns: dimension, metric, estimate (median over raters), ci_low, ci_high, human_q25,
    human_q75, human_min, human_max, n (raters with a defined score), ci_method.
    """
    loo = loo or loo_scores(data, boot, ties)
    rows = []
    for (dimension, metric), point in loo.point.items():
        used = (loo.n[dimension, metric] > 0) & np.isfinite(point)
        humans = np.where(used, point, np.nan)
        low, high = boot.interval(row_medians(loo.replicates[dimension, metric][:, used]))
        quartiles = _quantiles(humans)
        rows.append({"dimension": dimension, "metric": metric,
                     "estimate": quartiles.pop("human_median"), "ci_low": float(low),
                     "ci_high": float(high), **quartiles, "n": int(used.sum()),
                     "ci_method": boot.ci_method})
    return pd.DataFrame(rows)


def row_medians(replicates: np.ndarray) -> np.ndarray:
    """Median over raters of each resample; NaN where no rater has a score in it."""
    medians = np.full(replicates.shape[0], np.nan)
    scored = np.isfinite(replicates).any(axis=1)
    if scored.any():
        medians[scored] = np.nanmedian(replicates[scored], axis=1)
    return medians


def panel_reliability(data: StudyData, boot: Bootstrap) -> pd.DataFrame:
    """ICC(A,1) and Krippendorff's alpha of the human panel with and without each model.

    Both panels use the same stimuli: those the model has an output for (ICC: and every human
    rated). Columns: model_id, model_name, pipeline, dimension, metric (icc | krippendorff_alpha),
    form (ICC(A,1) = ICC(2,1) (ICC2) | level), panel (humans | humans + model | change), estimate,
    ci_low, ci_high, n, ci_method (ICC panels: F distribution; alpha and every change: bootstrap).
    """
    rows = []
    humans_only: dict[tuple, tuple] = {}  # the humans panel repeats for models covering the same stimuli
    panels = {dimension: _human_panel(data, dimension) for dimension in ("valence", "arousal", "emotion")}
    for m in range(data.n_models):
        info = {"model_id": data.model_ids[m], "model_name": data.model_names[m],
                "pipeline": data.pipelines[m]}
        for dimension, (humans, parts) in panels.items():
            model = data.model(dimension)[m].astype(float)
            if dimension == "emotion":
                model = np.where(model < 0, np.nan, model)
            covered = np.isfinite(model)
            rows += _alpha_rows(info, dimension, parts, model, covered, boot, humans_only)
            if dimension != "emotion":
                rows += _icc_rows(info, dimension, humans, np.vstack([humans, model[None]]),
                                  covered, boot, humans_only)
    return pd.DataFrame(rows)


def _human_panel(data: StudyData, dimension: str) -> tuple[np.ndarray, AlphaParts]:
    """The humans' raters x stimuli matrix (NaN = missing) and its alpha tallies."""
    humans = data.human(dimension).astype(float)
    if dimension == "emotion":
        humans = np.where(data.labels < 0, np.nan, humans)
    return humans, alpha_parts(humans, "nominal" if dimension == "emotion" else "interval")


def _alpha_rows(info, dimension, parts, model, covered, boot, humans_only) -> list[dict]:
    key = ("alpha", dimension, covered.tobytes())
    if key not in humans_only:
        humans_only[key] = alpha_of_parts(parts, boot, mask=covered)
    joined = alpha_of_parts(with_rater(parts, model), boot, mask=covered)
    return _panel_rows(info, dimension, "krippendorff_alpha", parts.level, humans_only[key][:3],
                       joined[:3], boot, boot.ci_method)


def _icc_rows(info, dimension, humans, with_model, covered, boot, humans_only) -> list[dict]:
    keep = covered & np.isfinite(with_model).all(axis=0)
    if keep.sum() < 2:
        nan = (np.nan, np.full(boot.n_boot, np.nan), int(keep.sum()))
        return _panel_rows(info, dimension, "icc", icc_label(ICC_PANEL_FORM), nan, nan, boot, "")
    key = ("icc", dimension, keep.tobytes())
    if key not in humans_only:
        humans_only[key] = _panel_icc(humans, keep, boot)
    results = [humans_only[key], _panel_icc(with_model, keep, boot, humans_only[key])]
    rows = _panel_rows(info, dimension, "icc", icc_label(ICC_PANEL_FORM), results[0][:3],
                       results[1][:3], boot, "F distribution (exact)")
    for row, result in zip(rows[:2], results):
        exact = result[3].set_index("form").loc[ICC_PANEL_FORM]
        row["ci_low"], row["ci_high"] = float(exact["ci_low"]), float(exact["ci_high"])
    return rows


def _panel_icc(panel: np.ndarray, keep: np.ndarray, boot: Bootstrap,
               humans: tuple | None = None) -> tuple:
    """ICC(A,1) of a raters x stimuli panel on the ``keep`` stimuli: point, replicates, n, the
    exact table (F-distribution CIs), and (centre, full-sample sums, resample sums).

    With ``humans``, this function's result for the panel without its last rater (the model),
    only the sums that the model changes are resampled (row terms, the model's column): the
    humans' column sums are reused, moved from the humans' centre to this panel's.
    """
    block = panel.T[keep]
    centre = block.mean()
    contributions = icc_contributions(block, centre)
    if humans is not None:
        contributions = contributions[:, [1, 2, -1]]
    full = np.zeros((len(keep), contributions.shape[1]))
    full[keep] = contributions
    point, reps = boot.sums(full)
    if humans is not None:
        human_centre, *human_sums = humans[4]
        point, reps = (_with_human_columns(sums, own, centre - human_centre)
                       for sums, own in zip(human_sums, (point, reps)))
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate, replicates = (icc_values(icc_mean_squares(sums, panel.shape[0]))[..., 1]
                                for sums in (point, reps))
    return estimate, replicates, int(keep.sum()), icc_matrix(block), (centre, point, reps)


def _with_human_columns(humans: np.ndarray, own: np.ndarray, shift: float) -> np.ndarray:
    """ICC sums of the panel with the model: the humans' item count and column sums (centred
    ``shift`` further: minus shift per item), the panel's own row terms (2 columns) and the
    model's column sum (last)."""
    count = humans[..., :1]
    return np.concatenate([count, own[..., :2], humans[..., 3:] - shift * count, own[..., 2:]],
                          axis=-1)


def _panel_rows(info, dimension, metric, form, base, joined, boot, panel_ci) -> list[dict]:
    (p0, r0, n0), (p1, r1, n1) = base, joined
    rows = []
    for panel, point, reps, n, method in (
        ("humans", p0, r0, n0, panel_ci), ("humans + model", p1, r1, n1, panel_ci),
        ("change", p1 - p0, r1 - r0, n1, boot.ci_method),
    ):
        low, high = boot.interval(reps)
        rows.append({**info, "dimension": dimension, "metric": metric, "form": form,
                     "panel": panel, "estimate": float(point), "ci_low": float(low),
                     "ci_high": float(high), "n": n, "ci_method": method})
    return rows
