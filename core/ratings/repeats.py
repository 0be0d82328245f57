"""Repeated ratings: the same rater rating the same stimulus more than once (test-retest).

Every rating is stored (a human rating is never dropped); a batch records how its repeats are
resolved for analysis under the ``repeats`` key of its mapping (see :data:`REPEAT_POLICIES`).
A repeat spanning batches is resolved by the policy of the newest batch involved: that batch's
import is where the user saw the repeats and chose. Resolution happens per dimension, over the
ratings that have a value for it:

- ``average``: valence and arousal are averaged; the label is the rater's majority label, and
  a tie among the rater's own labels gives no label (counted in the notes, never broken by order);
- ``first`` / ``newest``: the first / last rating in import order (batch, then file order);
- ``refuse``: the import is refused while repeats exist, so analyses never meet one (a batch
  restored from deletion can bring one back: it is then resolved as ``newest`` and noted).
"""

from __future__ import annotations

import pandas as pd

REPEAT_POLICIES: dict[str, str] = {
    "average": "average them (labels: the rater's majority; a tie gives no label)",
    "first": "keep the first rating",
    "newest": "keep the newest rating",
    "refuse": "refuse the import",
}
DEFAULT_POLICY = "average"
# Batches imported before the choice existed were analysed with the newest batch winning.
LEGACY_POLICY = "newest"
POLICY_KEY = "repeats"
PAIR = ["stimulus_id", "rater"]
NUMERIC = ("valence", "arousal")


class RepeatsRefused(ValueError):
    """The batch's policy is ``refuse`` and some of its ratings repeat a rater x stimulus."""

    def __init__(self, repeats: pd.DataFrame) -> None:
        self.repeats = repeats
        super().__init__(
            f"{len(repeats)} rater x stimulus pairs are rated more than once (in this file or "
            "in earlier batches) and the repeat policy is 'refuse', so nothing was imported. "
            "Choose how to resolve them (average, keep the first, keep the newest)."
        )


def check_policy(policy: str) -> str:
    if policy not in REPEAT_POLICIES:
        raise ValueError(f"repeat policy must be one of {list(REPEAT_POLICIES)}, got {policy!r}")
    return policy


def policy_of(mapping: dict | None) -> str:
    """The repeat policy a batch was imported with (:data:`LEGACY_POLICY` when it has none)."""
    return (mapping or {}).get(POLICY_KEY) or LEGACY_POLICY


def number_occurrences(ratings: pd.DataFrame) -> pd.Series:
    """1 for each rater x stimulus pair's first rating in row order, 2 for its repeat, ..."""
    return ratings.groupby(PAIR, sort=False).cumcount() + 1


def find_repeats(new: pd.DataFrame, earlier: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rater x stimulus pairs of ``new`` rated more than once, counting ``earlier`` batches too.

    Columns: rater, stimulus_id, stimulus_key (when ``new`` has it), in_file (ratings in
    ``new``), earlier (ratings in earlier batches).
    """
    in_file = new.groupby(PAIR, sort=False).size()
    before = pd.Series(0, index=in_file.index)
    if earlier is not None and len(earlier):
        before = earlier.groupby(PAIR).size().reindex(in_file.index, fill_value=0)
    table = pd.DataFrame({"in_file": in_file, "earlier": before}).astype(int)
    table = table.loc[table["in_file"] + table["earlier"] > 1].reset_index()
    if "stimulus_key" in new:
        keys = new.drop_duplicates(PAIR).set_index(PAIR)["stimulus_key"]
        table.insert(2, "stimulus_key", keys.reindex(pd.MultiIndex.from_frame(table[PAIR])).to_numpy())
    return table[["rater", "stimulus_id", *(["stimulus_key"] if "stimulus_key" in new else []),
                  "in_file", "earlier"]]


def in_import_order(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings sorted by batch, then file order (``occurrence``), stably."""
    keys = ["batch_id", "occurrence"] if "occurrence" in ratings else ["batch_id"]
    return ratings.sort_values(keys, kind="stable")


def resolve_repeats(ratings: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One rating per rater x stimulus, repeats resolved by their batch's policy; and notes.

    ``ratings`` follows db.analysis's contract; ``repeat_policy`` (per row, the batch's policy)
    and ``occurrence`` are optional (absent: :data:`LEGACY_POLICY`, row order).
    """
    repeated = ratings.duplicated(PAIR, keep=False).to_numpy()
    if not repeated.any():
        return ratings, []
    ordered = in_import_order(ratings.loc[repeated])
    policies = (
        ordered["repeat_policy"].fillna(LEGACY_POLICY) if "repeat_policy" in ordered
        else pd.Series(LEGACY_POLICY, index=ordered.index)
    )
    governing = policies.groupby([ordered[c] for c in PAIR], sort=False).transform("last")
    resolved, notes = [], []
    for policy, group in ordered.groupby(governing.to_numpy(), sort=True):
        rows, label_ties = _resolve(group, "newest" if policy == "refuse" else policy)
        resolved.append(rows)
        notes.append(_note(policy, len(rows), len(group), label_ties))
    kept = pd.concat([ratings.loc[~repeated], *resolved], ignore_index=True)
    return kept[ratings.columns.intersection(kept.columns)], notes


def _resolve(group: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int]:
    """One row per pair of ``group`` (already in import order); and the number of label ties."""
    by_pair = group.groupby(PAIR, sort=False)
    base = by_pair.last()  # the newest rating's batch and descriptive columns
    if policy == "average":
        values = by_pair[list(NUMERIC)].mean()
        labels, ties = _majority_labels(group)
    else:
        take = by_pair.first if policy == "first" else by_pair.last  # both skip missing values
        values, labels, ties = take()[list(NUMERIC)], take()["emotion"], 0
    base[list(NUMERIC)] = values
    base["emotion"] = labels.reindex(base.index)
    return base.reset_index(), ties


def _majority_labels(group: pd.DataFrame) -> tuple[pd.Series, int]:
    """Each pair's most frequent label; None on a tie (and the number of ties)."""
    voted = group.dropna(subset=["emotion"])
    counts = voted.groupby([*PAIR, "emotion"], sort=False).size().rename("n").reset_index()
    top = counts.groupby(PAIR, sort=False)["n"].transform("max")
    leaders = counts.loc[counts["n"] == top]
    tied = leaders.duplicated(PAIR, keep=False)
    winners = leaders.loc[~tied].set_index(PAIR)["emotion"]
    n_ties = int(leaders.loc[tied].drop_duplicates(PAIR).shape[0])
    pairs = group.drop_duplicates(PAIR).set_index(PAIR).index
    return winners.reindex(pairs).astype(object).where(lambda s: s.notna(), None), n_ties


def _note(policy: str, n_pairs: int, n_ratings: int, label_ties: int) -> str:
    how = {"average": "averaged (labels: the rater's majority)", "first": "resolved by keeping the first rating",
           "newest": "resolved by keeping the newest rating"}
    text = (f"{n_pairs} rater x stimulus pairs rated more than once ({n_ratings} ratings) "
            f"{how.get(policy, how['newest'])}")
    if policy == "refuse":
        text += " (their batch's policy is 'refuse': a batch restored after deletion repeats them)"
    if label_ties:
        text += f"; {label_ties} pairs' own labels tie, so they have no label"
    return text


def repeat_pairs(ratings: pd.DataFrame) -> pd.DataFrame:
    """The first and second rating of every repeated rater x stimulus pair (import order).

    Columns: stimulus_id, rater, then ``<dimension>_1`` and ``<dimension>_2`` for emotion,
    valence and arousal. Third and later ratings are left out (test-retest compares two).
    """
    repeated = ratings.loc[ratings.duplicated(PAIR, keep=False).to_numpy()]
    ordered = in_import_order(repeated)
    rank = ordered.groupby(PAIR, sort=False).cumcount()
    first = ordered.loc[(rank == 0).to_numpy()].set_index(PAIR)
    second = ordered.loc[(rank == 1).to_numpy()].set_index(PAIR)
    columns = ["emotion", *NUMERIC]
    pairs = first[columns].add_suffix("_1").join(second[columns].add_suffix("_2"), how="inner")
    return pairs.reset_index().astype({f"{d}_{i}": float for d in NUMERIC for i in (1, 2)})
