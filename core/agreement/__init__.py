"""Agreement statistics: human consensus, human-human ceiling, model vs human, model vs model.

Long DataFrames in (contracts in ``db.analysis``), tidy DataFrames out: one row per estimate
with ``estimate``, ``ci_low``, ``ci_high``, ``n`` plus identifying columns. No formatting here.

Typical notebook use::

    from core import agreement as ag
    data = ag.StudyData.from_frames(ratings, predictions, stimuli, models)
    boot = ag.Bootstrap(n_boot=1000, seed=0)
    ag.icc(data, "valence")
    ag.fleiss_kappa(data, boot)
    ag.model_vs_human_continuous(data, boot)

``core.agreement.report.build_report`` runs everything and returns every table by name.

Conventions (see README.md, "Agreement statistics"): CCC with population (ddof=0) moments; percentile
bootstrap CIs over stimuli from one seeded resample-weight matrix shared by every estimate;
ICC forms named in both conventions (pingouin 0.7 ``ICC(A,1)`` and Shrout-Fleiss ``ICC2``).
"""

from core.agreement.bootstrap import Bootstrap
from core.agreement.categorical import (
    cohen_kappa,
    fleiss_kappa_counts,
    jensen_shannon,
)
from core.agreement.comparisons import model_differences
from core.agreement.consensus import TIE_POLICIES, human_consensus
from core.agreement.continuous import ccc, pearson
from core.agreement.data import StudyData
from core.agreement.model_vs_human import (
    confusion_table,
    model_vs_human_continuous,
    model_vs_human_labels,
    per_emotion_recall,
)
from core.agreement.model_vs_model import model_vs_model
from core.agreement.ordinal import weighted_kappa
from core.agreement.pipelines import pipeline_summary, with_consensus_model
from core.agreement.planning import (
    ceiling_by_panel_size,
    rater_planning,
    raters_needed,
    spearman_brown,
)
from core.agreement.rater import human_ceiling, model_as_rater, panel_reliability
from core.agreement.reliability import (
    ICC_FORMS,
    fleiss_kappa,
    icc,
    icc_label,
    icc_matrix,
    krippendorff_alpha,
    krippendorff_alpha_matrix,
    leave_one_rater_out,
)
from core.agreement.replication import replication
from core.agreement.subgroups import subgroup_agreement, subgroup_columns

__all__ = [
    "Bootstrap",
    "ICC_FORMS",
    "StudyData",
    "TIE_POLICIES",
    "ccc",
    "ceiling_by_panel_size",
    "cohen_kappa",
    "confusion_table",
    "fleiss_kappa",
    "fleiss_kappa_counts",
    "human_ceiling",
    "human_consensus",
    "icc",
    "icc_label",
    "icc_matrix",
    "jensen_shannon",
    "krippendorff_alpha",
    "krippendorff_alpha_matrix",
    "leave_one_rater_out",
    "model_as_rater",
    "model_differences",
    "model_vs_human_continuous",
    "model_vs_human_labels",
    "model_vs_model",
    "panel_reliability",
    "pearson",
    "per_emotion_recall",
    "pipeline_summary",
    "rater_planning",
    "raters_needed",
    "replication",
    "spearman_brown",
    "subgroup_agreement",
    "subgroup_columns",
    "weighted_kappa",
    "with_consensus_model",
]
