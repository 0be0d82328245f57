"""Agreement split by a stimulus attribute (poser gender, age group, stimulus set, ...).

Each group's estimates use the same bootstrap resamples of all stimuli (not a stratified
resample), restricted to the group's stimuli; the gap between two groups is computed in every
resample from the same draws, giving its CI. Stimuli with no value for the attribute are left
out (their number is in ``n_unassigned``). Rows with model_id "humans" are the human ceiling
per group (Krippendorff's alpha: nominal labels, interval V/A).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, Estimate, SumsBatch, estimates_frame
from core.agreement.categorical import LABEL_METRICS
from core.agreement.data import DIMENSIONS, StudyData
from core.agreement.model_vs_human import (
    continuous_estimates,
    label_estimates,
    model_predictors,
    reference_codes,
)
from core.agreement.reliability import alpha_parts, alpha_terms, as_float_matrix, pairable_counts

SUBGROUP_CONTINUOUS = ("ccc", "pearson_r", "rmse", "mae")
ID_KEYS = ("model_id", "dimension", "reference", "scope", "metric")


def subgroup_columns(data: StudyData, max_groups: int = 12) -> list[str]:
    """Attribute columns usable for splitting: 2..``max_groups`` distinct values."""
    usable = []
    for column in data.attributes.columns:
        distinct = data.attributes[column].dropna().astype(str).nunique()
        if 2 <= distinct <= max_groups:
            usable.append(column)
    return usable


def group_masks(data: StudyData, attribute: str) -> dict[str, np.ndarray]:
    """Stimulus mask of each value of ``attribute`` (as text, sorted)."""
    if attribute not in data.attributes.columns:
        raise ValueError(
            f"no stimulus attribute {attribute!r}; available: {list(data.attributes.columns)}"
        )
    values = data.attributes[attribute]
    text = values.astype(str).where(values.notna())
    return {group: (text == group).to_numpy() for group in sorted(text.dropna().unique())}


def _group_estimates(data: StudyData, boot: Bootstrap, mask: np.ndarray, ties: str) -> list[Estimate]:
    estimates = continuous_estimates(data, boot, mask, SUBGROUP_CONTINUOUS)
    if data.n_models:
        truth = reference_codes(data, "human_majority", ties)
        result = label_estimates(model_predictors(data), truth, "human_majority", boot, mask,
                                 metrics=LABEL_METRICS)
        estimates += [e for e in result.metrics if e.keys["scope"] == "all"]
    for e in estimates:
        e.keys.setdefault("scope", "all")
        e.keys.setdefault("dimension", "emotion")
    return estimates


def _human_alphas(data: StudyData, boot: Bootstrap, masks: dict[str, np.ndarray]
                  ) -> dict[str, list[Estimate]]:
    """Krippendorff's alpha of the human raters in each group, per dimension: one set of
    tallies per dimension, every group's sums resampled together."""
    batch, queued = SumsBatch(boot), []
    for dimension in (*DIMENSIONS, "emotion"):
        level = "nominal" if dimension == "emotion" else "interval"
        parts = alpha_parts(as_float_matrix(data.human(dimension)), level)
        contributions, statistic = alpha_terms(parts)
        for group, mask in masks.items():
            queued.append((group, dimension, level, batch.add(contributions, mask), statistic,
                           pairable_counts(parts.present, mask)[0]))
    alphas: dict[str, list[Estimate]] = {group: [] for group in masks}
    for group, dimension, level, handle, statistic, n_units in queued:
        with np.errstate(divide="ignore", invalid="ignore"):
            point, reps = (statistic(sums) for sums in batch.sums(handle))
        alphas[group].append(Estimate(
            {"model_id": "humans", "model_name": "human raters", "pipeline": "human",
             "dimension": dimension, "reference": "raters", "scope": "all",
             "metric": f"krippendorff_alpha_{level}"},
            point, reps, n_units,
        ))
    return alphas


def subgroup_agreement(
    data: StudyData, boot: Bootstrap, attribute: str, ties: str = "none"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group estimates and pairwise gaps between groups for one stimulus attribute.

    Groups columns: attribute, group, n_stimuli, model_id, model_name, pipeline, dimension,
    reference, scope, metric, estimate, ci_low, ci_high, n, ci_method, n_unassigned (plus the
    label-metric columns n_excluded, note).
    Gaps columns: attribute, group_a, group_b, model_id, model_name, pipeline, dimension,
    reference, scope, metric, estimate (group_a minus group_b), ci_low, ci_high, n_a, n_b,
    ci_method.
    """
    masks = group_masks(data, attribute)
    unassigned = int(data.n_items - sum(int(m.sum()) for m in masks.values()))
    alphas = _human_alphas(data, boot, masks)
    per_group = {group: _group_estimates(data, boot, mask, ties) + alphas[group]
                 for group, mask in masks.items()}
    frames = []
    for group, estimates in per_group.items():
        frame = estimates_frame(estimates, boot)
        frame.insert(0, "n_stimuli", int(masks[group].sum()))
        frame.insert(0, "group", group)
        frame.insert(0, "attribute", attribute)
        frame["n_unassigned"] = unassigned
        frames.append(frame)
    groups = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return groups, _gaps(attribute, per_group, boot)


def _gaps(attribute: str, per_group: dict[str, list[Estimate]], boot: Bootstrap) -> pd.DataFrame:
    gaps = []
    for (group_a, first), (group_b, second) in combinations(per_group.items(), 2):
        index = {tuple(e.keys.get(k) for k in ID_KEYS): e for e in second}
        for a in first:
            b = index.get(tuple(a.keys.get(k) for k in ID_KEYS))
            if b is None:
                continue
            keys = {"attribute": attribute, "group_a": group_a, "group_b": group_b,
                    **{k: a.keys[k] for k in ("model_id", "model_name", "pipeline")},
                    **{k: a.keys.get(k) for k in ID_KEYS[1:]}}
            gaps.append(Estimate(keys, a.point - b.point, a.replicates - b.replicates, a.n,
                                 {"n_b": b.n}))
    frame = estimates_frame(gaps, boot)
    return frame.rename(columns={"n": "n_a"}) if len(frame) else frame
