"""Invariances every agreement statistic must have (Hypothesis).

Relabelling the categories, permuting raters or permuting stimuli must leave every point
estimate unchanged (category-wise results move with their label); perfect agreement gives 1;
Lin's CCC never exceeds |Pearson r|. A tie broken by label order would fail the relabelling
property, which is why majority ties are flagged instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core import agreement as ag
from core.agreement.data import LABELS
from core.agreement.reliability import alpha_replicates

NO_BOOT = ag.Bootstrap(n_boot=0)
SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def panels(draw, min_raters: int = 2, max_raters: int = 5, max_items: int = 12):
    """Raters x stimuli label codes (0..7, a few missing) and integer V ratings, plus a model."""
    n_raters = draw(st.integers(min_raters, max_raters))
    n_items = draw(st.integers(3, max_items))
    labels = draw(arrays(np.int16, (n_raters, n_items), elements=st.integers(-1, 7)))
    valence = draw(arrays(np.float64, (n_raters, n_items), elements=st.integers(-4, 4).map(float)))
    model_labels = draw(arrays(np.int16, (n_items,), elements=st.integers(0, 7)))
    model_valence = draw(arrays(np.float64, (n_items,), elements=st.integers(-4, 4).map(float)))
    return labels, valence, model_labels, model_valence


def frames(labels, valence, model_labels, model_valence, *, names=None, raters=None, ids=None):
    """db.analysis-shaped frames from arrays; ``names`` relabels, ``raters``/``ids`` rename."""
    names = list(LABELS) if names is None else names
    n_raters, n_items = labels.shape
    raters = [f"r{r}" for r in range(n_raters)] if raters is None else raters
    ids = list(range(1, n_items + 1)) if ids is None else ids
    rows = [
        {"stimulus": f"s{ids[i]}", "stimulus_id": ids[i], "rater": raters[r], "batch_id": 1,
         "emotion": names[labels[r, i]] if labels[r, i] >= 0 else None,
         "valence": valence[r, i], "arousal": np.nan}
        for r in range(n_raters) for i in range(n_items)
    ]
    predictions = pd.DataFrame({
        "stimulus": [f"s{i}" for i in ids], "stimulus_id": ids, "model_id": "m",
        "label": [names[c] for c in model_labels], "valence": model_valence, "arousal": np.nan,
    })
    models = pd.DataFrame({"model_id": ["m"], "name": ["m"], "pipeline": ["A"],
                           "labels": [list(LABELS)], "source": ["test"]})
    return ag.StudyData.from_frames(pd.DataFrame(rows), predictions, None, models)


def summary(data: ag.StudyData) -> dict[str, float]:
    """Point estimates of every statistic family, keyed by what they measure."""
    fleiss = ag.fleiss_kappa(data, NO_BOOT, unequal="all")
    result = {"fleiss": fleiss["estimate"].iloc[0]}
    result.update({f"category_{c}": v for c, v in zip(fleiss["category"][1:], fleiss["estimate"][1:])})
    result["alpha_nominal"] = ag.krippendorff_alpha(data, NO_BOOT, "emotion", "nominal")["estimate"].iloc[0]
    result["alpha_interval"] = ag.krippendorff_alpha(data, NO_BOOT, "valence", "interval")["estimate"].iloc[0]
    for _, row in ag.icc(data, "valence").iterrows():
        result[row["form"]] = row["estimate"]
    labels = ag.model_vs_human_labels(data, NO_BOOT)
    for _, row in labels[labels["scope"] == "all"].iterrows():
        result[f"model_{row['metric']}"] = row["estimate"]
    continuous = ag.model_vs_human_continuous(data, NO_BOOT)
    for _, row in continuous[continuous["dimension"] == "valence"].iterrows():
        result[f"model_{row['metric']}"] = row["estimate"]
    loo = ag.leave_one_rater_out(data, NO_BOOT)
    for _, row in loo.iterrows():
        result[f"loo_{row['rater']}_{row['dimension']}_{row['metric']}"] = row["estimate"]
    return result


def assert_same(first: dict[str, float], second: dict[str, float]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(second[key], first[key], rtol=1e-9, atol=1e-9, equal_nan=True,
                                   err_msg=key)


@SETTINGS
@given(panels(), st.permutations(list(LABELS)))
def test_relabelling_categories_changes_nothing(panel, relabelled):
    original = summary(frames(*panel))
    renamed = summary(frames(*panel, names=relabelled))
    moved = {k: v for k, v in original.items() if not k.startswith("category_")}
    moved.update({f"category_{relabelled[LABELS.index(k[9:])]}": v
                  for k, v in original.items() if k.startswith("category_")})
    assert_same(moved, renamed)


@SETTINGS
@given(panels(), st.randoms(use_true_random=False))
def test_permuting_raters_changes_nothing(panel, random):
    n_raters = panel[0].shape[0]
    names = [f"r{r}" for r in range(n_raters)]
    shuffled = names[:]
    random.shuffle(shuffled)
    original = summary(frames(*panel, raters=names))
    permuted = summary(frames(*panel, raters=shuffled))
    # a rater keeps their own leave-one-out score under their new name
    renamed = {k: v for k, v in original.items() if not k.startswith("loo_")}
    for key, value in original.items():
        if key.startswith("loo_"):
            rater, rest = key[4:].split("_", 1)
            renamed[f"loo_{shuffled[names.index(rater)]}_{rest}"] = value
    assert_same(renamed, permuted)


@SETTINGS
@given(panels(), st.randoms(use_true_random=False))
def test_permuting_stimuli_changes_nothing(panel, random):
    n_items = panel[0].shape[1]
    ids = list(range(1, n_items + 1))
    shuffled = ids[:]
    random.shuffle(shuffled)
    assert_same(summary(frames(*panel, ids=ids)), summary(frames(*panel, ids=shuffled)))


@SETTINGS
@given(panels(min_raters=2), st.integers(2, 6))
def test_perfect_agreement_gives_one(panel, n_raters):
    labels, valence, _, _ = panel
    first_labels, first_values = np.abs(labels[0]), valence[0]
    assume(len(set(first_labels)) >= 2 and np.ptp(first_values) > 0)
    same_labels = np.tile(first_labels, (n_raters, 1)).astype(np.int16)
    same_values = np.tile(first_values, (n_raters, 1))
    data = frames(same_labels, same_values, first_labels.astype(np.int16), first_values)
    result = summary(data)
    for key in ("fleiss", "alpha_nominal", "alpha_interval", "model_accuracy",
                "model_cohen_kappa", "model_macro_f1", "model_ccc", "model_pearson_r",
                *(form[0] for form in ag.ICC_FORMS)):
        assert result[key] == 1.0 or np.isclose(result[key], 1.0), key


@SETTINGS
@given(arrays(np.float64, st.integers(3, 30), elements=st.floats(-1, 1)),
       arrays(np.float64, st.integers(3, 30), elements=st.floats(-1, 1)))
def test_ccc_never_exceeds_absolute_r(x, y):
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    assume(np.ptp(x) > 1e-6 and np.ptp(y) > 1e-6)
    ccc, r = ag.ccc(x, y), ag.pearson(x, y)
    assert abs(ccc) <= abs(r) + 1e-12
    assert ag.ccc(y, x) == ccc


@SETTINGS
@given(arrays(np.float64, (4, 10), elements=st.integers(1, 5).map(float)),
       st.sampled_from(["nominal", "ordinal", "interval", "ratio"]))
def test_alpha_is_invariant_to_observer_order(matrix, level):
    forward = alpha_replicates(matrix, level, NO_BOOT)[0]
    backward = alpha_replicates(matrix[::-1], level, NO_BOOT)[0]
    np.testing.assert_allclose(backward, forward, rtol=1e-9, atol=1e-12, equal_nan=True)
