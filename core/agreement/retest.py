"""Within-rater reliability from repeated ratings (test-retest).

Each rater x stimulus pair rated at least twice contributes its first and second rating in
import order (batch, then file order). Valence and arousal: ICC(C,1) (= ICC(3,1)) of the two
occasions over those pairs, with its exact F-distribution CI; ICC(A,1) is given beside it
because a shift between sessions lowers it but not ICC(C,1). Labels: the share of pairs with the
same label on both occasions and Cohen's kappa, with bootstrap CIs that resample stimuli (a
stimulus' pairs stay together, as in every other table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.bootstrap import Bootstrap
from core.agreement.categorical import agreement_contributions, agreement_statistics
from core.agreement.data import LABELS, N_LABELS, label_codes
from core.agreement.reliability import icc_label, icc_matrix
from core.ratings.repeats import repeat_pairs

ICC_FORMS = ("ICC(C,1)", "ICC(A,1)")
COLUMNS = ["dimension", "metric", "form", "estimate", "ci_low", "ci_high", "n", "n_raters",
           "n_stimuli", "ci_method", "note"]


def retest_reliability(ratings: pd.DataFrame, stimulus_ids: np.ndarray, boot: Bootstrap) -> pd.DataFrame:
    """Within-rater agreement of first vs second ratings, one row per dimension and metric.

    ``ratings``: every stored rating (db.analysis contract, repeats included); ``stimulus_ids``:
    the report's stimulus index (so resamples match the other tables). Columns: ``COLUMNS``
    (n = pairs with both ratings of that dimension); no rows without repeats.
    """
    pairs = repeat_pairs(ratings)
    if pairs.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = [row for dimension in ("valence", "arousal") for row in _icc_rows(pairs, dimension)]
    rows += _label_rows(pairs, stimulus_ids, boot)
    return pd.DataFrame(rows, columns=COLUMNS)


def _counts(pairs: pd.DataFrame) -> dict[str, int]:
    return {"n": len(pairs), "n_raters": int(pairs["rater"].nunique()),
            "n_stimuli": int(pairs["stimulus_id"].nunique())}


def _icc_rows(pairs: pd.DataFrame, dimension: str) -> list[dict]:
    both = pairs.dropna(subset=[f"{dimension}_1", f"{dimension}_2"])
    base = {"dimension": dimension, "metric": "icc", **_counts(both),
            "ci_method": "F distribution (exact)"}
    if len(both) < 2:
        note = "fewer than two rater x stimulus pairs with both ratings"
        return [{**base, "form": icc_label(form), "estimate": np.nan, "ci_low": np.nan,
                 "ci_high": np.nan, "note": note} for form in ICC_FORMS]
    table = icc_matrix(both[[f"{dimension}_1", f"{dimension}_2"]].to_numpy(float)).set_index("form")
    return [{**base, "form": icc_label(form), "estimate": float(table.at[form, "estimate"]),
             "ci_low": float(table.at[form, "ci_low"]), "ci_high": float(table.at[form, "ci_high"]),
             "note": "first vs second rating of each rater x stimulus pair"} for form in ICC_FORMS]


def _label_rows(pairs: pd.DataFrame, stimulus_ids: np.ndarray, boot: Bootstrap) -> list[dict]:
    first = label_codes(pairs["emotion_1"], "repeated ratings column 'emotion'")
    second = label_codes(pairs["emotion_2"], "repeated ratings column 'emotion'")
    per_pair = agreement_contributions(first, second, N_LABELS)
    column = pd.Index(stimulus_ids).get_indexer(pairs["stimulus_id"])
    per_stimulus = np.zeros((len(stimulus_ids), per_pair.shape[1]))
    np.add.at(per_stimulus, column, per_pair)
    point, replicates = boot.evaluate(per_stimulus, lambda s: agreement_statistics(s, N_LABELS))
    labelled = pairs.loc[(first >= 0) & (second >= 0)]
    rows = []
    for metric in ("accuracy", "cohen_kappa"):
        low, high = boot.interval(replicates[metric])
        rows.append({"dimension": "emotion", "metric": metric, "form": "",
                     "estimate": float(point[metric]), "ci_low": float(low), "ci_high": float(high),
                     **_counts(labelled), "ci_method": boot.ci_method,
                     "note": f"same label on both occasions ({len(LABELS)} canonical labels)"})
    return rows
