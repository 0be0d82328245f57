"""Every table the analysis pages and ``python -m core report`` show, from one function.

``build_report`` takes the long DataFrames of ``db.analysis`` (and the model description
frame of ``core.workflows.catalog.describe_models``) and returns tidy tables by name; pages and
the command line share it, so a paper number and the dashboard number are the same number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from core import agreement as ag
from core.agreement.data import LABELS
from core.agreement.generalisation import generalisation_tables
from core.agreement.model_vs_human import label_tables
from core.agreement.pipelines import with_consensus_model
from core.agreement.rater import human_ceiling
from core.agreement.reliability import loo_scores
from core.agreement.replication import finding_masks
from core.agreement.retest import retest_reliability
from core.agreement.votes import (
    NOT_APPLICABLE,
    ceiling_with_counts,
    counts_ceiling,
    mark_not_applicable,
    vote_raters,
    without_vote_raters,
)

Progress = Callable[[int, int], None]

# Table name -> what it holds (the column lists are in each producing function's docstring).
TABLES: dict[str, str] = {
    "consensus": "human consensus per stimulus (core.agreement.human_consensus)",
    "fleiss": "Fleiss' kappa and per-category kappas of the human labels",
    "alpha": "Krippendorff's alpha of the human ratings (nominal labels, interval V/A)",
    "icc": "all six ICC forms of human valence and arousal",
    "loo": "leave-one-rater-out score of every human rater",
    "ceiling": "median human leave-one-out score per dimension and metric (the yardstick; "
               "labels of vote-count batches: from the counts)",
    "model_continuous": "model vs human mean valence/arousal",
    "model_labels": "model vs human majority / intended labels, both scopes",
    "human_vs_intended": "human majority label vs the intended emotion",
    "recall": "per-emotion recall (models; pipeline 'human' = human majority vs intended)",
    "confusion": "confusion counts and row shares",
    "model_as_rater": "each model's leave-one-out score and percentile among human raters",
    "panel_reliability": "ICC(A,1) and alpha of the human panel with and without each model",
    "model_vs_model": "pairwise model agreement matrices (long form)",
    "subgroups": "agreement per stimulus subgroup",
    "subgroup_gaps": "pairwise gaps between subgroups",
    "model_differences": "paired differences between models, and each model vs the human ceiling",
    "pipelines": "agreement per training pipeline; spread between and within pipelines",
    "replication": "subgroup gaps and biases per model, per pipeline and pooled: do they replicate?",
    "rater_planning": "Spearman-Brown reliability of k raters and raters needed",
    "test_retest": "within-rater reliability of repeated ratings (first vs second rating)",
    "models": "models analysed: pipeline, labels they can output, coverage",
    "notes": "data-handling decisions made while building the report",
}


def build_report(
    ratings: pd.DataFrame,
    predictions: pd.DataFrame | None,
    stimuli: pd.DataFrame | None,
    models: pd.DataFrame | None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ties: str = "none",
    unequal: str = "modal",
    subgroup_by: list[str] | None = None,
    consensus_of: list[str] | None = None,
    replication_gaps: list[tuple[str, str, str]] | None = None,
    progress: Progress | None = None,
) -> dict[str, pd.DataFrame]:
    """Every agreement table of one study, keyed as in ``TABLES``.

    ``n_boot`` bootstrap resamples of stimuli drawn once from ``seed`` serve every CI.
    ``ties``: majority-label tie policy (``core.agreement.TIE_POLICIES``); ``unequal``: how
    Fleiss' kappa handles unequal rater counts (``"modal"`` or ``"all"``); ``subgroup_by``:
    stimulus attributes to split by (default: every attribute with 2-12 values).
    ``consensus_of``: model ids averaged into the virtual model "consensus:all-pipelines"
    (default: the first model of each pipeline in ``models`` order; ``[]`` for none);
    ``replication_gaps``: (attribute, group_a, group_b) findings of the ``replication`` table
    (default: every two-valued attribute).
    ``progress(done, total)`` is called after each step. Raises ValueError without ratings.
    """
    if ratings is None or ratings.empty:
        raise ValueError("no human ratings to analyse: import a rating batch (or include one)")
    predictions, models, consensus_notes = with_consensus_model(predictions, models, consensus_of)
    data = ag.StudyData.from_frames(ratings, predictions, stimuli, models)
    boot = ag.Bootstrap(n_boot=n_boot, seed=seed)
    attributes = ag.subgroup_columns(data) if subgroup_by is None else list(subgroup_by)
    tables: dict[str, pd.DataFrame] = {}
    shared: dict[str, object] = {}
    steps: list[tuple[str, Callable[[], None]]] = [
        ("consensus", lambda: tables.update(consensus=ag.human_consensus(data, ties))),
        ("reliability", lambda: tables.update(_reliability(data, boot, unequal))),
        ("loo", lambda: tables.update(_rater_tables(
            data, boot, ties, shared, finding_masks(data, replication_gaps)))),
        ("model vs human", lambda: tables.update(
            model_continuous=ag.model_vs_human_continuous(data, boot),
            **label_tables(data, boot, ties))),
        ("panel", lambda: tables.update(panel_reliability=ag.panel_reliability(data, boot))),
        ("model vs model", lambda: tables.update(model_vs_model=ag.model_vs_model(data, boot, ties=ties))),
        ("subgroups", lambda: tables.update(_subgroups(data, boot, attributes, ties))),
        ("across pipelines", lambda: tables.update(generalisation_tables(
            data, boot, ties, loo=shared["loo"], icc_tables=tables["icc"], gaps=replication_gaps))),
        ("test-retest", lambda: tables.update(
            test_retest=retest_reliability(ratings, data.stimulus_ids, boot))),
    ]
    for done, (_, step) in enumerate(steps, start=1):
        step()
        if progress is not None:
            progress(done, len(steps))
    tables["models"] = _models_table(data)
    vote_note = [NOT_APPLICABLE] if vote_raters(data).any() else []
    tables["notes"] = pd.DataFrame(
        {"note": list(data.notes) + vote_note + consensus_notes + _method_notes(n_boot, seed, ties, unequal)})
    return {name: tables.get(name, pd.DataFrame()) for name in TABLES}


def _reliability(data: ag.StudyData, boot: ag.Bootstrap, unequal: str) -> dict[str, pd.DataFrame]:
    alpha = pd.concat([
        ag.krippendorff_alpha(data, boot, "emotion", "nominal"),
        ag.krippendorff_alpha(data, boot, "valence", "interval"),
        ag.krippendorff_alpha(data, boot, "arousal", "interval"),
    ], ignore_index=True)
    icc = pd.concat([ag.icc(data, "valence"), ag.icc(data, "arousal")], ignore_index=True)
    return {"fleiss": ag.fleiss_kappa(data, boot, unequal), "alpha": alpha, "icc": icc}


def _rater_tables(data: ag.StudyData, boot: ag.Bootstrap, ties: str, shared: dict[str, object],
                  groups: list[np.ndarray]) -> dict[str, pd.DataFrame]:
    votes = vote_raters(data)
    scores = shared["loo"] = without_vote_raters(loo_scores(data, boot, ties, groups), votes)
    ceiling = human_ceiling(data, boot, ties, scores)
    as_rater = ag.model_as_rater(data, boot, ties, scores) if data.n_models else pd.DataFrame()
    if votes.any():
        ceiling = ceiling_with_counts(ceiling, counts_ceiling(data, boot, ties))
        as_rater = mark_not_applicable(as_rater)
    return {"loo": ag.leave_one_rater_out(data, boot, ties, scores), "ceiling": ceiling,
            "model_as_rater": as_rater}


def _subgroups(data, boot, attributes: list[str], ties: str) -> dict[str, pd.DataFrame]:
    groups, gaps = [], []
    for attribute in attributes:
        per_group, gap = ag.subgroup_agreement(data, boot, attribute, ties)
        groups.append(per_group)
        gaps.append(gap)
    return {
        "subgroups": pd.concat(groups, ignore_index=True) if groups else pd.DataFrame(),
        "subgroup_gaps": pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame(),
    }


def _models_table(data: ag.StudyData) -> pd.DataFrame:
    labels = np.array(LABELS)
    return pd.DataFrame({
        "model_id": list(data.model_ids), "model_name": list(data.model_names),
        "pipeline": list(data.pipelines),
        "labels": [", ".join(labels[row]) for row in data.can_output],
        "n_labels": data.can_output.sum(axis=1).astype(int),
        "cannot_output": [", ".join(labels[~row]) for row in data.can_output],
        "n_predictions": _outputs_per_model(data),
        "n_stimuli": data.n_items,
    })


def _outputs_per_model(data: ag.StudyData) -> np.ndarray:
    """Stimuli with any output (label, probabilities, valence or arousal) per model."""
    if not data.n_models:
        return np.zeros(0, int)
    any_output = ((data.model_labels >= 0) | np.isfinite(data.model_valence)
                  | np.isfinite(data.model_arousal) | np.isfinite(data.model_probs).any(axis=-1))
    return any_output.sum(axis=1).astype(int)


def _method_notes(n_boot: int, seed: int, ties: str, unequal: str) -> list[str]:
    return [
        f"bootstrap: {n_boot} resamples of stimuli, seed {seed}; CIs: "
        f"{ag.Bootstrap(n_boot=n_boot).ci_method}, 95%",
        f"majority-label ties: policy '{ties}' (unresolved ties have no majority label)",
        f"Fleiss' kappa with unequal rater counts: policy '{unequal}'",
        "CCC: Lin (1989) with population (ddof=0) moments",
    ]
