"""Does a finding replicate across training pipelines?

A finding is an effect estimated for every model: a subgroup gap in agreement with the humans
(an attribute and two of its groups, group_a minus group_b; V/A CCC and label accuracy) or the
model-minus-human bias in valence and arousal. Per finding the table holds the estimate of every
model, of every pipeline (mean of its models) and the pooled estimate (mean of the pipeline
means, each pipeline weighted equally). The models share stimuli, so the estimates are not
independent and a textbook meta-analysis would understate the pooled CI; instead every estimate
here, the pooled one included, is computed in each of the shared bootstrap resamples.

A unit (model or pipeline) *replicates* the finding when its estimate has the pooled estimate's
sign and its CI excludes 0; the summary row counts them ("holds in 4 of 5 pipelines"). Subgroup
gaps also get a "humans" row: the same gap in the human ceiling (median rater leave-one-out
score per group), the yardstick for whether the models' gap is a human one too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, Estimate, estimates_frame
from core.agreement.continuous import moment_statistics
from core.agreement.data import StudyData
from core.agreement.pipelines import CONSENSUS_PIPELINE, pipeline_means, pipeline_members
from core.agreement.rater import row_medians
from core.agreement.reliability import LeaveOneOut, loo_scores
from core.agreement.scores import REFERENCE, model_scores
from core.agreement.subgroups import group_masks

# Label gaps are in accuracy only: the human row sums just pairs and hits (see _accuracy).
GAP_METRICS: tuple[tuple[str, str], ...] = (
    ("valence", "ccc"), ("arousal", "ccc"), ("emotion", "accuracy"))
BIAS_METRICS: tuple[tuple[str, str], ...] = (("valence", "mean_bias"), ("arousal", "mean_bias"))
BIAS_FINDING = "bias: model − human mean"


def two_group_attributes(data: StudyData) -> list[str]:
    """Stimulus attributes with exactly two values: the default subgroup findings."""
    return [column for column in data.attributes.columns
            if data.attributes[column].dropna().astype(str).nunique() == 2]


def replication(
    data: StudyData, boot: Bootstrap, ties: str = "none",
    gaps: list[tuple[str, str, str]] | None = None, loo: LeaveOneOut | None = None,
) -> pd.DataFrame:
    """Per finding: estimate and CI per model, per pipeline, pooled and (gaps) humans; which
    units replicate it.

    ``gaps``: (attribute, group_a, group_b) findings; default every two-valued attribute with
    its groups in sorted order. ``loo``: leave-one-out scores holding the group sums of the
    findings' groups (``finding_masks``), to reuse. Columns: finding, attribute, group_a, group_b, dimension,
    reference, metric, unit (model | pipeline | pooled | humans | summary), model_id, pipeline,
    estimate, ci_low, ci_high, n, ci_method, replicated (model/pipeline rows: same sign as the
    pooled estimate and CI excludes 0; pooled row: CI excludes 0), n_replicated and n_units
    (summary rows: pipelines; ``summary`` also counts models), summary.
    """
    if data.n_models == 0:
        return pd.DataFrame()
    estimates = []
    findings = [_gap_finding(data, *gap) for gap in _gaps_or_default(data, gaps)]
    human_gaps = _human_gaps(data, boot, ties, findings, loo)
    for finding, mask_a, mask_b in findings:
        first = model_scores(data, boot, ties, mask_a, GAP_METRICS)
        second = model_scores(data, boot, ties, mask_b, GAP_METRICS)
        for key in GAP_METRICS:
            point = first[key].point - second[key].point
            reps = first[key].replicates - second[key].replicates
            n = np.minimum(first[key].n, second[key].n)
            estimates += _units(data, finding, key, point, reps, n)
            estimates.append(human_gaps[finding["finding"], key])
    bias = model_scores(data, boot, ties, metrics=BIAS_METRICS)
    finding = {"finding": BIAS_FINDING, "attribute": None, "group_a": None, "group_b": None}
    for key in BIAS_METRICS:
        estimates += _units(data, finding, key, bias[key].point, bias[key].replicates, bias[key].n)
    return _with_verdicts(estimates_frame(estimates, boot))


def _units(data: StudyData, finding: dict, key: tuple[str, str], point: np.ndarray,
           reps: np.ndarray, n: np.ndarray) -> list[Estimate]:
    dimension, metric = key
    base = {**finding, "dimension": dimension, "reference": REFERENCE[dimension], "metric": metric}
    estimates = [Estimate({**base, "unit": "model", "model_id": data.model_ids[m],
                           "pipeline": data.pipelines[m]}, point[m], reps[:, m], int(n[m]))
                 for m in range(data.n_models)]
    members = pipeline_members(data)
    means, mean_reps = pipeline_means(point, reps, members)
    for p, (pipeline, idx) in enumerate(members.items()):
        estimates.append(Estimate({**base, "unit": "pipeline", "model_id": None,
                                   "pipeline": pipeline}, means[p], mean_reps[:, p],
                                  int(n[idx].min())))
    if members:
        everyone = np.concatenate(list(members.values()))
        estimates.append(Estimate({**base, "unit": "pooled", "model_id": None,
                                   "pipeline": "all pipelines"}, means.mean(),
                                  mean_reps.mean(axis=1), int(n[everyone].min())))
    return estimates


def _gap_finding(data: StudyData, attribute: str, group_a: str, group_b: str
                 ) -> tuple[dict, np.ndarray, np.ndarray]:
    """The finding's identifying columns and the masks of its two groups."""
    masks = group_masks(data, attribute)
    missing = {group_a, group_b} - set(masks)
    if missing:
        raise ValueError(f"attribute {attribute!r} has no group(s) {sorted(missing)}; "
                         f"groups: {sorted(masks)}")
    finding = {"finding": f"{attribute}: {group_a} − {group_b}", "attribute": attribute,
               "group_a": group_a, "group_b": group_b}
    return finding, masks[group_a], masks[group_b]


def finding_masks(data: StudyData, gaps: list[tuple[str, str, str]] | None = None
                  ) -> list[np.ndarray]:
    """The stimulus masks of every gap finding's two groups (none without models), for
    ``reliability.loo_scores`` to sum the raters' contributions on while it has them."""
    if data.n_models == 0:
        return []
    masks = []
    for attribute, *groups in _gaps_or_default(data, gaps):
        by_group = group_masks(data, attribute)
        masks += [by_group[group] for group in groups if group in by_group]
    return masks


def _gaps_or_default(data: StudyData, gaps: list[tuple[str, str, str]] | None
                     ) -> list[tuple[str, str, str]]:
    if gaps is not None:
        return gaps
    return [(a, *sorted(group_masks(data, a))) for a in two_group_attributes(data)]


def _human_gaps(data: StudyData, boot: Bootstrap, ties: str,
                findings: list[tuple[dict, np.ndarray, np.ndarray]], loo: LeaveOneOut | None
                ) -> dict[tuple[str, tuple[str, str]], Estimate]:
    """The humans row of every gap finding, keyed by (finding, (dimension, metric)), from the
    raters' contributions summed per group by ``loo_scores`` (run here if ``loo`` lacks them).
    """
    masks = [mask for _, mask_a, mask_b in findings for mask in (mask_a, mask_b)]
    wanted = {(dimension, mask.tobytes()) for dimension, _ in GAP_METRICS for mask in masks}
    if loo is None or not wanted <= loo.groups.keys():
        loo = loo_scores(data, boot, ties, masks)
    return {(finding["finding"], key): _human_gap(loo.groups, finding, key, mask_a, mask_b)
            for key in GAP_METRICS for finding, mask_a, mask_b in findings}


def _accuracy(sums: np.ndarray) -> dict[str, np.ndarray]:
    n = sums[..., 0]
    return {"accuracy": sums[..., 1] / np.where(n > 0, n, np.nan), "n": n}


def _human_gap(group_sums: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]],
               finding: dict, key: tuple[str, str], mask_a: np.ndarray, mask_b: np.ndarray
               ) -> Estimate:
    """The gap in the human ceiling (median rater leave-one-out score) between two groups."""
    dimension, metric = key
    statistic = _accuracy if dimension == "emotion" else moment_statistics
    medians = []
    for mask in (mask_a, mask_b):
        with np.errstate(divide="ignore", invalid="ignore"):
            point, reps = (statistic(sums) for sums in group_sums[dimension, mask.tobytes()])
        used = (point["n"] > 0) & np.isfinite(point[metric])
        medians.append((np.median(point[metric][used]) if used.any() else np.nan,
                        row_medians(reps[metric][:, used]), int(used.sum())))
    (point_a, reps_a, raters_a), (point_b, reps_b, raters_b) = medians
    return Estimate({**finding, "dimension": dimension, "reference": REFERENCE[dimension],
                     "metric": metric, "unit": "humans", "model_id": "human_ceiling",
                     "pipeline": "human"}, point_a - point_b, reps_a - reps_b,
                    min(raters_a, raters_b))


def _with_verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Add replicated flags per unit and one summary row per finding."""
    if frame.empty:
        return frame
    frame["replicated"] = None
    summaries = []
    for _, rows in frame.groupby(["finding", "dimension", "metric"], sort=False):
        pooled = rows[rows["unit"] == "pooled"]
        if pooled.empty:
            continue
        sign = np.sign(pooled["estimate"].iloc[0])
        excludes_zero = (rows["ci_low"] > 0) | (rows["ci_high"] < 0)
        holds = excludes_zero & (np.sign(rows["estimate"]) == sign) & (sign != 0)
        units = rows["unit"].isin(["model", "pipeline"])
        frame.loc[rows.index[units], "replicated"] = holds[units].to_numpy()
        frame.loc[pooled.index, "replicated"] = bool(excludes_zero[pooled.index[0]])
        pipelines = rows["unit"] == "pipeline"
        models = (rows["unit"] == "model") & (rows["pipeline"] != CONSENSUS_PIPELINE)
        summary = rows.iloc[0][["finding", "attribute", "group_a", "group_b", "dimension",
                                "reference", "metric"]].to_dict()
        n_held, n_units = int(holds[pipelines].sum()), int(pipelines.sum())
        summaries.append({
            **summary, "unit": "summary", "n_replicated": n_held, "n_units": n_units,
            "ci_method": "",
            "summary": f"holds in {n_held} of {n_units} pipelines "
                       f"({int(holds[models].sum())} of {int(models.sum())} models)",
        })
    return pd.concat([frame, pd.DataFrame(summaries)], ignore_index=True)
