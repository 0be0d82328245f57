"""The model as one more rater: its leave-one-out score among the humans', and panel changes.

A human's leave-one-out score compares them with the mean (V/A) or majority (labels) of the
other humans; a model's compares it with the mean or majority of all humans (the model is the
one left out). Its percentile is the share of human raters scoring below it (ties count half),
computed in every bootstrap resample too, so it has a CI.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, SumsBatch
from core.agreement.categorical import agreement_contributions, agreement_statistics
from core.agreement.consensus import human_means
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import LABELS, N_LABELS, StudyData
from core.agreement.model_vs_human import NO_LABELS, reference_codes
from core.agreement.reliability import (
    LOO_METRICS,
    AlphaParts,
    LeaveOneOut,
    alpha_parts,
    alpha_terms,
    icc_contributions,
    icc_label,
    icc_mean_squares,
    icc_table,
    icc_values,
    loo_scores,
    pairable_counts,
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

    Each panel with a model is the humans' panel plus one row: its sums are the humans' plus
    the model's terms, which are small and all resampled together (``SumsBatch``).
    """
    batch = SumsBatch(boot)
    panels = {dimension: _HumanPanel(data, dimension, boot) for dimension in PANEL_DIMENSIONS}
    pending = []
    for m in range(data.n_models):
        info = {"model_id": data.model_ids[m], "model_name": data.model_names[m],
                "pipeline": data.pipelines[m]}
        for dimension, panel in panels.items():
            model = data.model(dimension)[m].astype(float)
            if dimension == "emotion":
                model = np.where(model < 0, np.nan, model)
            pending.append(panel.alpha_rows(info, model, batch))
            if dimension != "emotion":
                pending.append(panel.icc_rows(info, model, batch))
    return pd.DataFrame([row for rows in pending for row in rows()])


PANEL_DIMENSIONS = ("valence", "arousal", "emotion")


class _HumanPanel:
    """One dimension's human panel, with what every panel-plus-a-model reuses: the alpha
    tallies, and per set of stimuli the humans' ICC sums and per-stimulus row terms."""

    def __init__(self, data: StudyData, dimension: str, boot: Bootstrap) -> None:
        humans = data.human(dimension).astype(float)
        if dimension == "emotion":
            humans = np.where(data.labels < 0, np.nan, humans)
        self.dimension, self.humans, self.boot = dimension, humans, boot
        self.parts = alpha_parts(humans, "nominal" if dimension == "emotion" else "interval")
        self.complete = np.isfinite(humans).all(axis=0)
        self._alpha: dict[bytes, tuple] = {}
        self._icc: dict[bytes, _HumanIcc] = {}

    def alpha_rows(self, info: dict, model: np.ndarray, batch: SumsBatch) -> Callable[[], list]:
        """Queue the alpha sums of the panels without and with ``model``; the rows later."""
        covered = np.isfinite(model)
        if covered.tobytes() not in self._alpha:
            self._alpha[covered.tobytes()] = _queued_alpha(self.parts, covered, batch)
        base, joined = self._alpha[covered.tobytes()], _queued_alpha(
            with_rater(self.parts, model), covered, batch)
        return lambda: _panel_rows(info, self.dimension, "krippendorff_alpha", self.parts.level,
                                   _summed_alpha(base, batch), _summed_alpha(joined, batch),
                                   self.boot, self.boot.ci_method)

    def icc_rows(self, info: dict, model: np.ndarray, batch: SumsBatch) -> Callable[[], list]:
        """Queue the model's ICC terms; the rows (humans, humans + model, change) later."""
        keep = np.isfinite(model) & self.complete
        form = icc_label(ICC_PANEL_FORM)
        if keep.sum() < 2:
            nan = (np.nan, np.full(self.boot.n_boot, np.nan), int(keep.sum()))
            return lambda: _panel_rows(info, self.dimension, "icc", form, nan, nan, self.boot, "")
        if keep.tobytes() not in self._icc:
            self._icc[keep.tobytes()] = _HumanIcc(self.humans.T[keep], keep, self.boot)
        humans = self._icc[keep.tobytes()]
        centre, own = humans.model_terms(model)
        handle = batch.add(own)

        def rows() -> list[dict]:
            joined = humans.with_model(centre, *batch.sums(handle))
            results = (humans.result, joined)
            rows = _panel_rows(info, self.dimension, "icc", form, *(r[:3] for r in results),
                               self.boot, "F distribution (exact)")
            for row, result in zip(rows[:2], results):
                row["ci_low"], row["ci_high"] = result[3]
            return rows

        return rows


def _queued_alpha(parts: AlphaParts, covered: np.ndarray, batch: SumsBatch) -> tuple:
    contributions, statistic = alpha_terms(parts)
    return batch.add(contributions, covered), statistic, pairable_counts(parts.present, covered)


def _summed_alpha(queued: tuple, batch: SumsBatch) -> tuple:
    """(estimate, replicates, pairable units) of a queued alpha."""
    handle, statistic, (n_units, _) = queued
    with np.errstate(divide="ignore", invalid="ignore"):
        return tuple(statistic(sums) for sums in batch.sums(handle)) + (n_units,)


class _HumanIcc:
    """ICC(A,1) of the humans' complete block on the ``keep`` stimuli, and what a panel with
    one more rater needs from it: the humans' sums and each stimulus's row terms, centred on
    the humans' grand mean.

    ``result``: (estimate, replicates, n, (exact CI low, high)), as ``with_model``'s.
    """

    def __init__(self, block: np.ndarray, keep: np.ndarray, boot: Bootstrap) -> None:
        self.keep, self.k = keep, block.shape[1]
        self.centre = block.mean()
        contributions = icc_contributions(block, self.centre)
        full = np.zeros((len(keep), contributions.shape[1]))
        full[keep] = contributions
        self.sums = boot.sums(full)
        centred = block - self.centre
        self.row, self.squares = centred.sum(axis=1), (centred**2).sum(axis=1)
        self.result = _icc_result(*self.sums, len(block), self.k)

    def model_terms(self, model: np.ndarray) -> tuple[float, np.ndarray]:
        """The panel's grand mean with the model, and the (n_items, 3) terms that the model
        changes: squared row sum, sum of squares (both of the whole row), the model's value,
        all centred on that mean; zero off ``keep``."""
        values, k = model[self.keep], self.k
        centre = (self.centre * k * len(values) + values.sum()) / (len(values) * (k + 1))
        shift, own = centre - self.centre, values - centre
        row = self.row - k * shift + own
        squares = self.squares - 2 * shift * self.row + k * shift * shift + own * own
        terms = np.zeros((len(self.keep), 3))
        terms[self.keep] = np.column_stack([row * row, squares, own])
        return centre, terms

    def with_model(self, centre: float, point: np.ndarray, reps: np.ndarray) -> tuple:
        """``result`` of the panel with the model from the summed ``model_terms``."""
        shift = centre - self.centre
        point, reps = (_with_human_columns(human, own, shift)
                       for human, own in zip(self.sums, (point, reps)))
        return _icc_result(point, reps, int(self.keep.sum()), self.k + 1)


def _icc_result(point: np.ndarray, reps: np.ndarray, n: int, k: int) -> tuple:
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate, replicates = (icc_values(icc_mean_squares(sums, k))[..., 1]
                                for sums in (point, reps))
    exact = icc_table(point, n, k).set_index("form").loc[ICC_PANEL_FORM]
    return estimate, replicates, n, (float(exact["ci_low"]), float(exact["ci_high"]))


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
