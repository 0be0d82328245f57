"""Model vs model agreement: do models from different training pipelines err differently?

Pairwise CCC on valence and arousal and Cohen's kappa on labels, over the stimuli both members
of a pair have an output for (pairwise deletion). The human consensus (mean rating, majority
label) can join as one more row/column so the matrix shows models next to the humans.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap, Estimate, estimates_frame
from core.agreement.categorical import agreement_contributions, agreement_statistics
from core.agreement.consensus import human_means
from core.agreement.continuous import moment_statistics, paired_moments
from core.agreement.data import N_LABELS, StudyData
from core.agreement.model_vs_human import reference_codes

HUMAN_ID = "human_consensus"


def model_vs_model(
    data: StudyData, boot: Bootstrap, include_human: bool = True, ties: str = "none"
) -> pd.DataFrame:
    """Agreement of every ordered pair of models (both orders and the diagonal, for heatmaps).

    Columns: model_a, model_b, name_a, name_b, pipeline_a, pipeline_b, same_pipeline,
    dimension (valence | arousal | emotion), metric (ccc | cohen_kappa), estimate, ci_low,
    ci_high, n, ci_method. With ``include_human`` the human consensus is the member
    ``human_consensus`` with pipeline "human".
    """
    ids, names, pipelines = list(data.model_ids), list(data.model_names), list(data.pipelines)
    values = {d: data.model(d) for d in ("valence", "arousal")}
    labels = data.model_labels
    if include_human and data.n_models:
        ids, names, pipelines = ids + [HUMAN_ID], names + ["human consensus"], pipelines + ["human"]
        values = {d: np.vstack([v, human_means(data, d)[None]]) for d, v in values.items()}
        labels = np.vstack([labels, reference_codes(data, "human_majority", ties)[None]])
    first, second = np.triu_indices(len(ids))
    estimates = []
    for dimension, matrix in values.items():
        contributions = paired_moments(matrix[first].T, matrix[second].T)
        point, reps = boot.evaluate(contributions, moment_statistics)
        estimates += _pair_estimates(ids, names, pipelines, first, second, dimension, "ccc",
                                     point["ccc"], reps["ccc"], point["n"])
    contributions = agreement_contributions(labels[first].T, labels[second].T, N_LABELS)
    point, reps = boot.evaluate(contributions, lambda s: agreement_statistics(s, N_LABELS))
    estimates += _pair_estimates(ids, names, pipelines, first, second, "emotion", "cohen_kappa",
                                 point["cohen_kappa"], reps["cohen_kappa"], point["n"])
    return estimates_frame(estimates, boot)


def _pair_estimates(ids, names, pipelines, first, second, dimension, metric, point, reps, n):
    estimates = []
    for pair, (a, b) in enumerate(zip(first, second)):
        for x, y in ((a, b), (b, a)) if a != b else ((a, b),):
            estimates.append(Estimate(
                {"model_a": ids[x], "model_b": ids[y], "name_a": names[x], "name_b": names[y],
                 "pipeline_a": pipelines[x], "pipeline_b": pipelines[y],
                 "same_pipeline": pipelines[x] == pipelines[y], "dimension": dimension,
                 "metric": metric},
                point[pair], reps[:, pair], int(n[pair]),
            ))
    return estimates
