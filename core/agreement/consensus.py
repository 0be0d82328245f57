"""Human consensus per stimulus: mean and SD of valence/arousal, majority label, vote shares."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.data import DIMENSIONS, LABELS, MISSING, StudyData

# "none": a tied stimulus has no majority label (it is flagged and left out of label metrics).
# "intended": a tie that includes the stimulus' intended emotion resolves to it; other ties as
# "none". Ties are never broken by label order.
TIE_POLICIES: tuple[str, ...] = ("none", "intended")


def majority_codes(
    counts: np.ndarray, ties: str = "none", intended: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Majority label codes (-1 where none) and a tie flag per row of vote counts (N, K)."""
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    top = counts.max(axis=-1, initial=0)
    at_top = (counts == top[..., None]) & (top[..., None] > 0)
    is_tie = at_top.sum(axis=-1) > 1
    codes = np.where(at_top.any(axis=-1) & ~is_tie, counts.argmax(axis=-1), MISSING)
    if ties == "intended" and intended is not None:
        # counts may carry leading axes (one table per left-out rater): intended is per stimulus.
        intended = np.broadcast_to(intended, counts.shape[:-1])
        resolvable = is_tie & (intended >= 0)
        intended_in_tie = np.take_along_axis(
            at_top, np.maximum(intended, 0)[..., None], axis=-1
        )[..., 0]
        codes = np.where(resolvable & intended_in_tie, intended, codes)
    return codes.astype(np.int16), is_tie


def human_consensus(data: StudyData, ties: str = "none") -> pd.DataFrame:
    """One row per stimulus: consensus values the models are compared against.

    Columns: stimulus_id, stimulus, n_raters, n_votes, majority_label (None on an unresolved
    tie or without votes), majority_share (votes for the top label / n_votes), is_tie,
    tied_labels ("a|b" on a tie), tie_resolved_by ("intended" or ""), intended_emotion,
    valence_mean, valence_sd, valence_n, arousal_mean, arousal_sd, arousal_n (SD with ddof=1:
    a descriptive spread of raters, NaN with one rating), share_<label> for every canonical
    label (votes / n_votes).
    """
    counts = data.vote_counts()
    codes, is_tie = majority_codes(counts, ties, data.intended)
    n_votes = counts.sum(axis=1)
    top = counts.max(axis=1, initial=0)
    labels = np.array(LABELS, dtype=object)
    at_top = (counts == top[:, None]) & (top[:, None] > 0)
    frame = pd.DataFrame({
        "stimulus_id": data.stimulus_ids,
        "stimulus": data.stimulus_names,
        "n_raters": _rated_any(data).sum(axis=0),
        "n_votes": n_votes.astype(int),
        "majority_label": np.where(codes >= 0, labels[np.maximum(codes, 0)], None),
        "majority_share": np.where(n_votes > 0, top / np.where(n_votes > 0, n_votes, 1), np.nan),
        "is_tie": is_tie,
        "tied_labels": ["|".join(labels[row]) if tie else "" for row, tie in zip(at_top, is_tie)],
        "tie_resolved_by": np.where(is_tie & (codes >= 0), "intended", ""),
        "intended_emotion": np.where(data.intended >= 0, labels[np.maximum(data.intended, 0)], None),
    })
    for dimension in DIMENSIONS:
        values = data.human(dimension)
        n = np.isfinite(values).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(values, axis=0) / np.where(n > 0, n, np.nan)
            spread = np.nansum((values - mean) ** 2, axis=0) / np.where(n > 1, n - 1, np.nan)
        frame[f"{dimension}_mean"] = mean
        frame[f"{dimension}_sd"] = np.sqrt(spread)
        frame[f"{dimension}_n"] = n
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / np.where(n_votes > 0, n_votes, np.nan)[:, None]
    for k, label in enumerate(LABELS):
        frame[f"share_{label}"] = shares[:, k]
    return frame


def human_means(data: StudyData, dimension: str) -> np.ndarray:
    """Mean human rating per stimulus (NaN where nobody rated it)."""
    values = data.human(dimension)
    n = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(values, axis=0) / np.where(n > 0, n, np.nan)


def _rated_any(data: StudyData) -> np.ndarray:
    return (data.labels != MISSING) | np.isfinite(data.valence) | np.isfinite(data.arousal)
