"""Training pipelines as the unit of analysis: do the findings depend on one pipeline?

A pipeline (EmotiEffLib, EmoNet, Multitask-CNN, card models, ESR-9, an imported tool) is the
``pipeline`` of each model row. Per pipeline, each metric is averaged over its models (each
model scored on its own stimuli, as in ``model_continuous`` / ``model_labels``); the spread
between pipelines (SD of the pipeline means) stands beside the spread within them (SD of the
models of one pipeline), all with CIs from the shared resamples.

The "all pipelines" consensus is a virtual model: per stimulus, the mean class probabilities
and mean valence/arousal of one representative per pipeline (its label: the most probable
class). It is added to the predictions before scoring, so every table includes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, Estimate, estimates_frame
from core.agreement.data import LABELS, StudyData
from core.agreement.scores import COMPARED, REFERENCE, model_scores

CONSENSUS_ID = "consensus:all-pipelines"
CONSENSUS_PIPELINE = "consensus"
# Pipeline values that are not training pipelines: never representatives, never units.
NOT_PIPELINES = frozenset({CONSENSUS_PIPELINE, "human", "unknown"})
ALL_PIPELINES = "all pipelines"
PROB_COLUMNS = [f"p_{label}" for label in LABELS]


def default_representatives(predictions: pd.DataFrame, models: pd.DataFrame | None) -> list[str]:
    """The first model (in ``models`` order, i.e. registry order) of each pipeline that has
    predictions."""
    if models is None or models.empty or "pipeline" not in models:
        return []
    predicted = set(predictions["model_id"].astype(str).unique())
    listed = models.assign(model_id=models["model_id"].astype(str))
    listed = listed[listed["model_id"].isin(predicted) & ~listed["pipeline"].isin(NOT_PIPELINES)
                    & listed["pipeline"].notna()]
    return listed.drop_duplicates("pipeline")["model_id"].tolist()


def with_consensus_model(
    predictions: pd.DataFrame, models: pd.DataFrame | None,
    representatives: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Predictions and model descriptions with the consensus model added, and notes saying how.

    ``representatives``: model ids averaged (default ``default_representatives``); fewer than
    two leave the frames unchanged (a note says why). Per stimulus the consensus averages the
    representatives that have an output: probabilities over those giving probabilities (a label
    a model cannot output counts as probability 0), valence and arousal over those giving them.
    """
    if predictions is None or predictions.empty:
        return predictions, models, []
    chosen = list(representatives) if representatives is not None else (
        default_representatives(predictions, models))
    unknown = sorted(set(chosen) - set(predictions["model_id"].astype(str).unique()))
    if unknown:
        raise ValueError(f"consensus representatives {unknown} have no predictions in this study")
    if len(chosen) < 2:
        return predictions, models, [
            "no all-pipelines consensus model: it needs representatives of at least two pipelines"]
    rows = predictions[predictions["model_id"].astype(str).isin(chosen)]
    consensus = _average(rows)
    described = _consensus_description(models, chosen)
    notes = [f"consensus model {CONSENSUS_ID!r}: mean probabilities and mean valence/arousal of "
             f"{', '.join(chosen)} (one per pipeline)"]
    joined = pd.concat([predictions, consensus], ignore_index=True)
    if models is None:
        return joined, described, notes
    return joined, pd.concat([models, described], ignore_index=True), notes


def _average(rows: pd.DataFrame) -> pd.DataFrame:
    probs = rows.reindex(columns=PROB_COLUMNS).astype(float)
    gives_probs = probs.notna().any(axis=1)
    probs = probs.fillna(0.0).where(gives_probs)  # a model without probabilities is skipped
    values = pd.concat([rows[["stimulus_id", "valence", "arousal"]].reset_index(drop=True),
                        probs.reset_index(drop=True)], axis=1)
    means = values.groupby("stimulus_id", sort=True).mean()
    names = rows.drop_duplicates("stimulus_id").set_index("stimulus_id")["stimulus"]
    has_probs = means[PROB_COLUMNS].notna().any(axis=1)
    best = means[PROB_COLUMNS].fillna(-1.0).to_numpy().argmax(axis=1)
    labels = np.where(has_probs, np.array(LABELS, dtype=object)[best], None)
    frame = means.reset_index()
    frame.insert(0, "stimulus", names.reindex(frame["stimulus_id"]).to_numpy())
    frame.insert(2, "model_id", CONSENSUS_ID)
    frame.insert(3, "label", labels)
    return frame


def _consensus_description(models: pd.DataFrame | None, chosen: list[str]) -> pd.DataFrame:
    labels: list[str] = []
    if models is not None and "labels" in models:
        listed = models.assign(model_id=models["model_id"].astype(str)).set_index("model_id")
        own = set().union(*(set(_label_list(listed.at[m, "labels"]))
                             for m in chosen if m in listed.index))
        labels = [label for label in LABELS if label in own]
    return pd.DataFrame([{
        "model_id": CONSENSUS_ID, "name": "all-pipelines consensus", "pipeline": CONSENSUS_PIPELINE,
        "labels": labels, "source": "consensus",
    }])


def _label_list(value: object) -> list[str]:
    """A model row's ``labels`` as a list (missing -> none; the engine then infers them)."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


def pipeline_members(data: StudyData) -> dict[str, np.ndarray]:
    """Model indices of each pipeline (in first-appearance order), the consensus left out."""
    members: dict[str, list[int]] = {}
    for m, pipeline in enumerate(data.pipelines):
        if pipeline != CONSENSUS_PIPELINE:
            members.setdefault(pipeline, []).append(m)
    return {pipeline: np.array(models) for pipeline, models in members.items()}


def pipeline_means(point: np.ndarray, replicates: np.ndarray, members: dict[str, np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean over each pipeline's models: points (P,) and replicates (B, P).

    A resample where any member's score is undefined leaves the pipeline undefined there."""
    points = np.array([point[idx].mean() for idx in members.values()])
    reps = np.column_stack([replicates[:, idx].mean(axis=1) for idx in members.values()]) \
        if members else np.zeros((replicates.shape[0], 0))
    return points, reps


def pipeline_summary(data: StudyData, boot: Bootstrap, ties: str = "none") -> pd.DataFrame:
    """Per pipeline, each metric averaged over its models; spread between and within pipelines.

    Rows (``statistic``): "mean" per pipeline (the consensus model as pipeline "consensus");
    "within_pipeline_sd" per pipeline with two or more models (SD of its models' scores,
    ddof=1); for pipeline "all pipelines": "mean" (mean of the pipeline means, each pipeline
    weighted equally), "between_pipeline_sd" (SD of the pipeline means, ddof=1) and
    "within_pipeline_sd" (root mean within-pipeline variance over pipelines with two or more
    models). Columns: pipeline, statistic, n_models, models, dimension, reference, metric,
    estimate, ci_low, ci_high, n (fewest stimuli any member was scored on), ci_method.
    """
    if data.n_models == 0:
        return pd.DataFrame()
    members = pipeline_members(data)
    consensus = [m for m, p in enumerate(data.pipelines) if p == CONSENSUS_PIPELINE]
    scores = model_scores(data, boot, ties)
    estimates = []
    for dimension, metric in COMPARED:
        score = scores[dimension, metric]
        keys = {"dimension": dimension, "reference": REFERENCE[dimension], "metric": metric}

        def row(pipeline, statistic, idx, point, reps):
            estimates.append(Estimate(
                {"pipeline": pipeline, "statistic": statistic, "n_models": len(idx),
                 "models": ", ".join(data.model_ids[i] for i in idx), **keys},
                point, reps, int(score.n[idx].min()) if len(idx) else 0))

        groups = {**members, **({CONSENSUS_PIPELINE: np.array(consensus)} if consensus else {})}
        for pipeline, idx in groups.items():
            row(pipeline, "mean", idx, score.point[idx].mean(), score.replicates[:, idx].mean(axis=1))
            if len(idx) >= 2:
                row(pipeline, "within_pipeline_sd", idx, score.point[idx].std(ddof=1),
                    score.replicates[:, idx].std(axis=1, ddof=1))
        if len(members) < 2:
            continue
        everyone = np.concatenate(list(members.values()))
        means, mean_reps = pipeline_means(score.point, score.replicates, members)
        row(ALL_PIPELINES, "mean", everyone, means.mean(), mean_reps.mean(axis=1))
        row(ALL_PIPELINES, "between_pipeline_sd", everyone, means.std(ddof=1),
            mean_reps.std(axis=1, ddof=1))
        several = [idx for idx in members.values() if len(idx) >= 2]
        if several:
            within = np.mean([score.point[idx].var(ddof=1) for idx in several])
            within_reps = np.mean([score.replicates[:, idx].var(axis=1, ddof=1) for idx in several],
                                  axis=0)
            row(ALL_PIPELINES, "within_pipeline_sd", np.concatenate(several), np.sqrt(within),
                np.sqrt(within_reps))
    return estimates_frame(estimates, boot)
