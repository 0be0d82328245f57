"""Human-human reliability: Fleiss' kappa, Krippendorff's alpha, ICC, leave-one-rater-out.

Missing data, per metric:
- Fleiss' kappa needs the same number of raters per stimulus. ``unequal="modal"`` (default)
  keeps only stimuli rated by the most common number of raters and reports how many were left
  out; ``unequal="all"`` keeps every stimulus with >= 2 labels and uses each stimulus' own count
  in its observed agreement (the common generalisation; not Fleiss 1971 exactly).
- Krippendorff's alpha uses every pairable value (stimuli with >= 2 values); no deletion.
- ICC needs a complete raters x stimuli block: stimuli missing any rater's value are dropped
  (listwise, as pingouin's ``nan_policy="omit"``); ``n`` and ``n_dropped`` say how many.
- Leave-one-rater-out uses, per rater, the stimuli that rater rated and at least one other
  rater rated (labels: and whose other raters have an untied majority).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import krippendorff
import numpy as np
import pandas as pd
from scipy import special

from core.agreement.bootstrap import Bootstrap, Statistic
from core.agreement.categorical import (
    agreement_contributions,
    agreement_statistics,
    code_counts,
    fleiss_contributions,
    fleiss_statistics,
    one_hot,
)
from core.agreement.consensus import majority_codes
from core.agreement.continuous import N_MOMENTS, moment_statistics, paired_moments
from core.agreement.data import LABELS, MISSING, N_LABELS, StudyData

UNEQUAL_RATER_POLICIES: tuple[str, ...] = ("modal", "all")
ALPHA_LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
# pingouin 0.7 name, Shrout & Fleiss (1979) name, pingouin < 0.6 name, description.
ICC_FORMS: tuple[tuple[str, str, str, str], ...] = (
    ("ICC(1,1)", "ICC(1,1)", "ICC1", "one-way random effects, single rater"),
    ("ICC(A,1)", "ICC(2,1)", "ICC2", "two-way random effects, absolute agreement, single rater"),
    ("ICC(C,1)", "ICC(3,1)", "ICC3", "two-way mixed effects, consistency, single rater"),
    ("ICC(1,k)", "ICC(1,k)", "ICC1k", "one-way random effects, mean of k raters"),
    ("ICC(A,k)", "ICC(2,k)", "ICC2k", "two-way random effects, absolute agreement, mean of k raters"),
    ("ICC(C,k)", "ICC(3,k)", "ICC3k", "two-way mixed effects, consistency, mean of k raters"),
)
MOMENT_BLOCK_ENTRIES = 1 << 22  # leave-one-out moments are built this many at a time (32 MB)
LOO_METRICS = {"valence": ("ccc", "pearson_r"), "arousal": ("ccc", "pearson_r"),
               "emotion": ("accuracy", "cohen_kappa")}


def _rows(boot: Bootstrap, point: np.ndarray, replicates: np.ndarray) -> dict[str, np.ndarray]:
    low, high = boot.interval(replicates)
    return {"estimate": np.asarray(point, float), "ci_low": low, "ci_high": high}


# --- Fleiss' kappa --------------------------------------------------------------------------

def fleiss_kappa(data: StudyData, boot: Bootstrap, unequal: str = "modal") -> pd.DataFrame:
    """Fleiss' kappa and per-category kappas of the human labels, with bootstrap CIs.

    Columns: metric ("fleiss_kappa" | "category_kappa"), category (None | label), estimate,
    ci_low, ci_high, n (stimuli used), n_excluded (stimuli left out), raters_per_stimulus,
    unequal (the policy), ci_method.
    """
    if unequal not in UNEQUAL_RATER_POLICIES:
        raise ValueError(f"unequal must be one of {UNEQUAL_RATER_POLICIES}, got {unequal!r}")
    counts = data.vote_counts()
    n_i = counts.sum(axis=1)
    rated = n_i >= 2
    if unequal == "modal" and rated.any():
        sizes, freq = np.unique(n_i[rated], return_counts=True)
        modal = sizes[freq == freq.max()].max()
        keep = n_i == modal
        per_stimulus = str(int(modal))
    else:
        keep = rated
        per_stimulus = f"{int(n_i[rated].min())}-{int(n_i[rated].max())}" if rated.any() else "0"
    point, reps = boot.evaluate(
        fleiss_contributions(counts), lambda s: _fleiss_vector(s), mask=keep
    )
    values = _rows(boot, point, reps)
    frame = pd.DataFrame({
        "metric": ["fleiss_kappa"] + ["category_kappa"] * N_LABELS,
        "category": [None, *LABELS],
        **values,
    })
    frame["n"] = int(keep.sum())
    frame["n_excluded"] = int((n_i > 0).sum() - keep.sum())
    frame["raters_per_stimulus"] = per_stimulus
    frame["unequal"] = unequal
    frame["ci_method"] = boot.ci_method
    return frame


def _fleiss_vector(sums: np.ndarray) -> np.ndarray:
    result = fleiss_statistics(sums, N_LABELS)
    return np.concatenate([result["kappa"][..., None], result["category_kappa"]], axis=-1)


# --- Krippendorff's alpha -------------------------------------------------------------------

def krippendorff_alpha_matrix(matrix: np.ndarray, level: str) -> float:
    """Krippendorff's alpha of a raters x units matrix (NaN = missing) by the krippendorff package.

    A thin, validated wrapper: the level of measurement is always explicit.
    """
    if level not in ALPHA_LEVELS:
        raise ValueError(f"level must be one of {ALPHA_LEVELS}, got {level!r}")
    return float(krippendorff.alpha(reliability_data=np.asarray(matrix, float),
                                     level_of_measurement=level))


def krippendorff_alpha(
    data: StudyData, boot: Bootstrap, dimension: str, level: str
) -> pd.DataFrame:
    """Krippendorff's alpha of the human ratings of ``dimension`` at an explicit ``level``.

    Labels are nominal; valence/arousal are interval (ordinal and ratio are available too).
    Columns: dimension, metric, level, estimate, ci_low, ci_high, n (pairable stimuli),
    n_values (pairable values), n_raters, ci_method.
    """
    matrix = as_float_matrix(data.human(dimension))
    point, reps, n_units, n_values = alpha_replicates(matrix, level, boot)
    return pd.DataFrame({
        "dimension": [dimension], "metric": ["krippendorff_alpha"], "level": [level],
        **{k: [v[()]] for k, v in _rows(boot, point, reps).items()},
        "n": [n_units], "n_values": [n_values], "n_raters": [data.n_raters],
        "ci_method": [boot.ci_method],
    })


def as_float_matrix(matrix: np.ndarray) -> np.ndarray:
    """Label codes (-1 = missing) or ratings as floats with NaN for missing."""
    if matrix.dtype.kind in "iu":
        return np.where(matrix == MISSING, np.nan, matrix.astype(float))
    return matrix.astype(float)


def alpha_replicates(
    matrix: np.ndarray, level: str, boot: Bootstrap, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Alpha of a raters x units matrix and its bootstrap replicates over units.

    Returns (estimate, replicates (n_boot,), pairable units, pairable values). Nominal and
    interval use closed forms additive over units; ordinal and ratio use the coincidence matrix
    over the distinct values (fine for rating scales, which have few).
    """
    if level not in ALPHA_LEVELS:
        raise ValueError(f"level must be one of {ALPHA_LEVELS}, got {level!r}")
    if level in ("nominal", "interval"):
        return alpha_of_parts(alpha_parts(matrix, level), boot, mask)
    contributions, statistic = _coincidence_alpha(matrix, level)
    present = np.isfinite(matrix).sum(axis=0)
    return _alpha_result(boot, contributions, statistic, present, mask)


@dataclass(frozen=True)
class AlphaParts:
    """Per-unit tallies behind nominal or interval alpha, additive over raters: a panel with
    one rater more (``with_rater``) costs that rater's row, not the whole matrix again.

    ``tally``: nominal, units x values counts of each of ``values``; interval, units x 3
    (count, sum, sum of squares of the values centred on ``centre``).
    """

    level: str
    tally: np.ndarray
    values: np.ndarray
    centre: float = 0.0

    @property
    def present(self) -> np.ndarray:
        """Values per unit."""
        return self.tally.sum(axis=1) if self.level == "nominal" else self.tally[:, 0]


def alpha_parts(matrix: np.ndarray, level: str) -> AlphaParts:
    """The ``AlphaParts`` of a raters x units matrix (NaN = missing), nominal or interval."""
    if level == "nominal":
        values, coded = _value_codes(matrix)
        return AlphaParts(level, code_counts(coded, len(values)), values)
    centre = float(np.nanmean(matrix)) if np.isfinite(matrix).any() else 0.0
    centred = matrix - centre
    present = np.isfinite(centred)
    m = present.sum(axis=0).astype(float)
    s1 = np.where(present, centred, 0.0).sum(axis=0)
    s2 = np.where(present, centred**2, 0.0).sum(axis=0)
    return AlphaParts(level, np.column_stack([m, s1, s2]), np.empty(0), centre)


def with_rater(parts: AlphaParts, row: np.ndarray) -> AlphaParts:
    """``parts`` of the panel with one more rater, whose values per unit are ``row``."""
    present = np.isfinite(row)
    if parts.level == "interval":
        centred = np.where(present, row - parts.centre, 0.0)
        extra = np.column_stack([present, centred, centred**2])
        return AlphaParts(parts.level, parts.tally + extra, parts.values, parts.centre)
    values = np.union1d(parts.values, row[present])
    tally = np.zeros((len(row), len(values)))
    tally[:, np.searchsorted(values, parts.values)] = parts.tally
    tally[np.flatnonzero(present), np.searchsorted(values, row[present])] += 1
    return AlphaParts(parts.level, tally, values, parts.centre)


def alpha_of_parts(parts: AlphaParts, boot: Bootstrap, mask: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``alpha_replicates`` from tallies (nominal or interval)."""
    contributions, statistic = alpha_terms(parts)
    return _alpha_result(boot, contributions, statistic, parts.present, mask)


def alpha_terms(parts: AlphaParts) -> tuple[np.ndarray, Statistic]:
    """Per-unit contributions of alpha and the statistic of their sums (to sum in a batch)."""
    return (_nominal_alpha if parts.level == "nominal" else _interval_alpha)(parts.tally)


def pairable_counts(present: np.ndarray, mask: np.ndarray | None = None) -> tuple[int, int]:
    """Units with >= 2 values (within ``mask``) and the values they hold."""
    pairable = present >= 2
    if mask is not None:
        pairable &= mask
    return int(pairable.sum()), int(present[pairable].sum())


def _alpha_result(boot, contributions, statistic, present, mask):
    point, reps = boot.evaluate(contributions, statistic, mask=mask)
    return (point, reps) + pairable_counts(present, mask)


def _value_codes(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct finite values and each cell's index among them (-1 = missing).

    ``np.unique`` without ``return_inverse``, then a binary search: the inverse would argsort
    every rating, the search only looks among the few distinct values.
    """
    finite = np.isfinite(matrix)
    values = np.unique(matrix[finite])
    coded = np.full(matrix.shape, -1)
    coded[finite] = np.searchsorted(values, matrix[finite])
    return values, coded


def _nominal_alpha(counts: np.ndarray):
    m = counts.sum(axis=1)
    ok = m >= 2
    disagreeing = np.where(ok, (m * m - (counts**2).sum(axis=1)) / np.where(ok, m - 1, 1), 0.0)
    contributions = np.column_stack([np.where(ok, m, 0.0), disagreeing, counts * ok[:, None]])

    def statistic(sums: np.ndarray) -> np.ndarray:
        n = sums[..., 0]
        expected = n * n - (sums[..., 2:] ** 2).sum(axis=-1)
        return 1 - (n - 1) * sums[..., 1] / expected

    return contributions, statistic


def _interval_alpha(tally: np.ndarray):
    m, s1, s2 = tally.T
    ok = m >= 2
    within = np.where(ok, (2 * m * s2 - 2 * s1 * s1) / np.where(ok, m - 1, 1), 0.0)
    contributions = np.column_stack([m * ok, s1 * ok, s2 * ok, within])

    def statistic(sums: np.ndarray) -> np.ndarray:
        n, total, squares, observed = np.moveaxis(sums, -1, 0)
        expected = 2 * n * squares - 2 * total * total
        # No spread at all (e.g. a resample of one stimulus): undefined, not round-off / round-off.
        expected = np.where(expected > 1e-12 * 2 * n * squares, expected, np.nan)
        return 1 - (n - 1) * observed / expected

    return contributions, statistic


def _coincidence_alpha(matrix: np.ndarray, level: str):
    values, coded = _value_codes(matrix)
    counts = code_counts(coded, len(values))
    m = counts.sum(axis=1)
    ok = m >= 2
    pairs = counts[:, :, None] * counts[:, None, :] - np.eye(len(values)) * counts[:, :, None]
    coincidences = np.where(ok[:, None, None], pairs / np.where(ok, m - 1, 1)[:, None, None], 0.0)
    v = len(values)

    def statistic(sums: np.ndarray) -> np.ndarray:
        sums = sums.reshape(sums.shape[:-1] + (v, v))
        marginals = sums.sum(axis=-1)
        n = marginals.sum(axis=-1)
        distance = _alpha_distance(values, marginals, level)
        observed = (sums * distance).sum(axis=(-2, -1))
        expected = (marginals[..., :, None] * marginals[..., None, :] * distance).sum(axis=(-2, -1))
        return 1 - (n - 1) * observed / expected

    return coincidences.reshape(len(m), v * v), statistic


def _alpha_distance(values: np.ndarray, marginals: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2 of Krippendorff (2011) for each pair of values."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(((c - k) / (c + k)) ** 2)
    cumulative = np.cumsum(marginals, axis=-1)
    index = np.arange(len(values))
    low, high = np.minimum.outer(index, index), np.maximum.outer(index, index)
    # sum of n_g for g from c to k, minus (n_c + n_k) / 2
    before_low = np.where(low > 0, np.take(cumulative, low - 1, axis=-1), 0.0) * (low > 0)
    between = np.take(cumulative, high, axis=-1) - before_low
    ends = (marginals[..., :, None] + marginals[..., None, :]) / 2
    return (between - ends) ** 2


# --- ICC ------------------------------------------------------------------------------------

def icc_contributions(matrix: np.ndarray, centre: float | None = None) -> np.ndarray:
    """(n_items, 3 + k) per-item contributions to the two-way ANOVA of a complete matrix.

    Columns: item indicator, squared row sum, sum of squares, and the item's k values (column
    sums). Values are centred on ``centre`` (default: the grand mean) first; ICCs are shift
    invariant, the centring only keeps the sums of squares precise.
    """
    if centre is None and matrix.size:
        centre = matrix.mean()
    centred = matrix - centre if matrix.size else matrix
    row = centred.sum(axis=1)
    return np.column_stack([np.ones(len(centred)), row * row, (centred**2).sum(axis=1), centred])


def icc_mean_squares(sums: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Mean squares (rows, columns, error, within) from summed ``icc_contributions``."""
    n, row_squares, squares = sums[..., 0], sums[..., 1], sums[..., 2]
    columns = sums[..., 3:]
    grand = columns.sum(axis=-1)
    correction = grand * grand / (n * k)
    total = squares - correction
    # Sums of squares come from differences of sums: round-off below this share of the total
    # is zero, so perfect or degenerate agreement gives exact (or NaN) ICCs, not 1e16.
    floor = 1e-12 * np.abs(total)
    ss_rows, ss_cols = (np.where(ss > floor, ss, 0.0) for ss in (
        row_squares / k - correction, (columns**2).sum(axis=-1) / n - correction))
    ss_error = total - ss_rows - ss_cols
    ss_error = np.where(ss_error > floor, ss_error, 0.0)
    return {
        "n": n, "k": np.full(np.shape(n), float(k)),
        "msr": ss_rows / (n - 1), "msc": ss_cols / (k - 1),
        "mse": ss_error / ((n - 1) * (k - 1)), "msw": (ss_cols + ss_error) / (n * (k - 1)),
    }


def icc_values(ms: dict[str, np.ndarray]) -> np.ndarray:
    """The six ICC forms (..., 6) in ``ICC_FORMS`` order (McGraw & Wong 1996 formulas)."""
    n, k, msr, msc, mse, msw = (ms[key] for key in ("n", "k", "msr", "msc", "mse", "msw"))
    scale = msr + msc + mse + msw

    def ratio(numerator, denominator):
        defined = np.abs(denominator) > 1e-12 * scale
        return np.where(defined, numerator / np.where(defined, denominator, 1.0), np.nan)

    return np.stack([
        ratio(msr - msw, msr + (k - 1) * msw),
        ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        ratio(msr - mse, msr + (k - 1) * mse),
        ratio(msr - msw, msr),
        ratio(msr - mse, msr + (msc - mse) / n),
        ratio(msr - mse, msr),
    ], axis=-1)


def icc_label(form: str) -> str:
    """Display name in every convention, e.g. ``ICC(A,1) = ICC(2,1) (ICC2)``."""
    pingouin_name, shrout_fleiss, legacy, _ = next(f for f in ICC_FORMS if form in f[:3])
    names = dict.fromkeys([pingouin_name, shrout_fleiss])
    return f"{' = '.join(names)} ({legacy})"


def icc_matrix(matrix: np.ndarray, confidence: float = 0.95) -> pd.DataFrame:
    """All six ICC forms of a complete items x raters matrix with F, df, p and exact CIs.

    Same ANOVA and CI formulas as pingouin 0.7 ``intraclass_corr`` (Shrout & Fleiss 1979;
    McGraw & Wong 1996 for ICC(A,.)), computed here at full precision: pingouin rounds its CI
    to two decimals. Columns: form, shrout_fleiss, pingouin_legacy, label, description,
    estimate, F, df1, df2, p, ci_low, ci_high, n, k.
    """
    matrix = np.asarray(matrix, float)
    return icc_table(icc_contributions(matrix).sum(axis=0), *matrix.shape, confidence)


def icc_table(sums: np.ndarray, n: int, k: int, confidence: float = 0.95) -> pd.DataFrame:
    """``icc_matrix`` of the n x k matrix whose summed ``icc_contributions`` are ``sums``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ms = icc_mean_squares(sums, k)
        values = icc_values(ms)
        low, high, f_values, df2, p = _icc_inference(ms, values, n, k, 1 - confidence)
    return pd.DataFrame({
        "form": [f[0] for f in ICC_FORMS],
        "shrout_fleiss": [f[1] for f in ICC_FORMS],
        "pingouin_legacy": [f[2] for f in ICC_FORMS],
        "label": [icc_label(f[0]) for f in ICC_FORMS],
        "description": [f[3] for f in ICC_FORMS],
        "estimate": values, "F": f_values, "df1": n - 1, "df2": df2, "p": p,
        "ci_low": low, "ci_high": high, "n": n, "k": k,
    })


def _icc_inference(ms, values, n: int, k: int, alpha: float):
    msr, msc, mse, msw = (np.float64(ms[key]) for key in ("msr", "msc", "mse", "msw"))
    icc_a = np.float64(values[1])
    df1, df_within, df_error = n - 1, n * (k - 1), (n - 1) * (k - 1)
    f1, f3 = msr / msw, msr / mse
    upper = 1 - alpha / 2
    f1_low, f1_high = f1 / _f_quantile(upper, df1, df_within), f1 * _f_quantile(upper, df_within, df1)
    f3_low, f3_high = f3 / _f_quantile(upper, df1, df_error), f3 * _f_quantile(upper, df_error, df1)
    # McGraw & Wong (1996) Satterthwaite approximation for absolute agreement.
    fj = msc / mse
    v = (df_error * (k * icc_a * fj + n * (1 + (k - 1) * icc_a) - k * icc_a) ** 2) / (
        df1 * k**2 * icc_a**2 * fj**2 + (n * (1 + (k - 1) * icc_a) - k * icc_a) ** 2
    )
    fu, fl = _f_quantile(upper, n - 1, v), _f_quantile(upper, v, n - 1)
    a_low = n * (msr - fu * mse) / (fu * (k * msc + (k * n - k - n) * mse) + n * msr)
    a_high = n * (fl * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fl * msr)
    # (F - 1) / (F + k - 1) written as 1 - k / (F + k - 1): exact 1 when F is infinite.
    low = [1 - k / (f1_low + k - 1), a_low, 1 - k / (f3_low + k - 1),
           1 - 1 / f1_low, a_low * k / (1 + a_low * (k - 1)), 1 - 1 / f3_low]
    high = [1 - k / (f1_high + k - 1), a_high, 1 - k / (f3_high + k - 1),
            1 - 1 / f1_high, a_high * k / (1 + a_high * (k - 1)), 1 - 1 / f3_high]
    f_values = [f1, f3, f3, f1, f3, f3]
    df2 = [df_within, df_error, df_error, df_within, df_error, df_error]
    p = [_f_survival(f, df1, d) for f, d in zip(f_values, df2)]
    return np.array(low), np.array(high), np.array(f_values), df2, np.array(p)


# scipy.special rather than scipy.stats.f: importing scipy.stats costs ~0.7 s of every report
# command. The same functions: stats.f.ppf is fdtri and stats.f.sf is fdtrc, except that stats
# gives 1 for F <= 0 (fdtrc: NaN); tests/test_reliability_fdist.py compares them on edge cases.
def _f_quantile(q: float, df1: float, df2: float) -> np.float64:
    return special.fdtri(df1, df2, q)


def _f_survival(f: float, df1: float, df2: float) -> np.float64:
    if f <= 0 and df1 > 0 and df2 > 0:
        return np.float64(1.0)
    return special.fdtrc(df1, df2, f)


def complete_block(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items x raters block of stimuli every rater rated, and the mask of stimuli kept."""
    keep = np.isfinite(matrix).all(axis=0) if matrix.size else np.zeros(matrix.shape[1], bool)
    return matrix[:, keep].T, keep


def icc(data: StudyData, dimension: str, confidence: float = 0.95) -> pd.DataFrame:
    """All six ICC forms of human ``valence`` or ``arousal`` (stimuli missing a rater dropped).

    Columns: dimension, form, shrout_fleiss, pingouin_legacy, label, description, estimate, F,
    df1, df2, p, ci_low, ci_high, n (stimuli used), k (raters), n_dropped, ci_method, note.
    """
    block, keep = complete_block(data.human(dimension))
    rated = np.isfinite(data.human(dimension)).any(axis=0)
    note = ""
    if block.shape[0] < 2 or block.shape[1] < 2:
        note = ("fewer than two stimuli rated by every rater: ICC needs a complete raters x "
                "stimuli block; use Krippendorff's alpha (handles missing ratings)")
        frame = icc_matrix(np.full((2, max(block.shape[1], 2)), np.nan), confidence)
        frame[["estimate", "F", "p", "ci_low", "ci_high"]] = np.nan
        frame["n"], frame["k"] = block.shape[0], block.shape[1]
    else:
        frame = icc_matrix(block, confidence)
    frame.insert(0, "dimension", dimension)
    frame["n_dropped"] = int((rated & ~keep).sum())
    frame["ci_method"] = "F distribution (exact)"
    frame["note"] = note
    return frame


# --- Leave one rater out --------------------------------------------------------------------

@dataclass(frozen=True)
class LeaveOneOut:
    """Per-rater leave-one-out scores: point (R,), bootstrap replicates (B, R) and n (R,).

    ``groups``: per (dimension, mask bytes) of the stimulus groups asked for, the full-sample
    and resample sums of each rater's contributions on that group (labels: pairs and hits
    only), for the human rows of subgroup gaps (``core.agreement.replication``).
    """

    point: dict[tuple[str, str], np.ndarray]
    replicates: dict[tuple[str, str], np.ndarray]
    n: dict[tuple[str, str], np.ndarray]
    groups: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def others_mean(matrix: np.ndarray) -> np.ndarray:
    """For each rater, the mean of the *other* raters per stimulus (NaN if nobody else rated)."""
    present = np.isfinite(matrix)
    total = np.where(present, matrix, 0.0).sum(axis=0)
    count = present.sum(axis=0)
    own = np.where(present, matrix, 0.0)
    others = count - present
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(others > 0, (total - own) / others, np.nan)


def others_majority(labels: np.ndarray, counts: np.ndarray, ties: str = "none",
                    intended: np.ndarray | None = None) -> np.ndarray:
    """For each rater, the majority label of the other raters per stimulus (-1 on a tie)."""
    # Whole vote counts in 16 bits: raters x stimuli x labels of float64 is 128 MB at 20,000 x 100.
    small = np.int16 if counts.max(initial=0) < np.iinfo(np.int16).max else np.int32
    others = counts.astype(small)[None, :, :] - one_hot(labels, counts.shape[1], np.uint8)
    return majority_codes(others, ties, intended)[0]


def loo_scores(data: StudyData, boot: Bootstrap, ties: str = "none",
               groups: Sequence[np.ndarray] = ()) -> LeaveOneOut:
    """Every rater against the rest: CCC/r for valence and arousal, accuracy/kappa for labels.

    ``groups``: stimulus masks whose sums go to ``LeaveOneOut.groups``, taken while each
    dimension's large contributions exist (they are not built twice).
    """
    point, reps, n, group_sums = {}, {}, {}, {}
    for dimension in ("valence", "arousal"):
        sums, by_group = _moment_sums(data.human(dimension), boot, dimension, groups)
        group_sums.update(by_group)
        with np.errstate(divide="ignore", invalid="ignore"):
            p, r = (moment_statistics(s) for s in sums)
        for metric in LOO_METRICS[dimension]:
            point[dimension, metric], reps[dimension, metric] = p[metric], r[metric]
            n[dimension, metric] = p["n"]
    majority = others_majority(data.labels, data.vote_counts(), ties, data.intended)
    contributions = agreement_contributions(data.labels.T, majority.T, N_LABELS)
    sums = boot.sums(contributions)
    group_sums.update(_group_sums(boot, "emotion", contributions[..., :2],
                                  tuple(s[..., :2] for s in sums), groups))
    with np.errstate(divide="ignore", invalid="ignore"):
        p, r = (agreement_statistics(s, N_LABELS) for s in sums)
    for metric in LOO_METRICS["emotion"]:
        point["emotion", metric], reps["emotion", metric] = p[metric], r[metric]
        n["emotion", metric] = p["n"]
    return LeaveOneOut(point, reps, n, group_sums)


def _moment_sums(matrix: np.ndarray, boot: Bootstrap, dimension: str,
                 groups: Sequence[np.ndarray]) -> tuple[tuple, dict]:
    """Sums of every rater's moments against the others' mean: (full-sample, resamples) and
    per group, built a block of raters at a time (all at once: 144 MB at 20,000 x 100)."""
    others = others_mean(matrix)
    per_block = max(1, MOMENT_BLOCK_ENTRIES // max(matrix.shape[1] * N_MOMENTS, 1))
    blocks = []
    for start in range(0, max(len(matrix), 1), per_block):
        raters = slice(start, start + per_block)
        contributions = paired_moments(matrix[raters].T, others[raters].T)
        sums = boot.sums(contributions)
        blocks.append((sums, _group_sums(boot, dimension, contributions, sums, groups)))
        del contributions
    joined = tuple(np.concatenate([block[0][i] for block in blocks], axis=-2) for i in (0, 1))
    by_group = {key: tuple(np.concatenate([block[1][key][i] for block in blocks], axis=-2)
                           for i in (0, 1)) for key in blocks[0][1]}
    return joined, by_group


def _group_sums(boot: Bootstrap, dimension: str, contributions: np.ndarray,
                full: tuple[np.ndarray, np.ndarray], masks: Sequence[np.ndarray]
                ) -> dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]]:
    """Sums of ``contributions`` on each mask's stimuli. A mask whose complement is summed
    already gets the full sums minus those: a two-group split costs one masked product."""
    found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for mask in masks:
        key, complement = mask.tobytes(), (~mask).tobytes()
        if key in found:
            continue
        if complement in found:
            found[key] = tuple(whole - other for whole, other in zip(full, found[complement]))
        else:
            found[key] = boot.sums(contributions, mask)
    return {(dimension, key): sums for key, sums in found.items()}


def leave_one_rater_out(
    data: StudyData, boot: Bootstrap, ties: str = "none", scores: LeaveOneOut | None = None
) -> pd.DataFrame:
    """Each rater vs the mean (V/A: CCC, r) or majority (labels: accuracy, kappa) of the others.

    Columns: rater, dimension, metric, estimate, ci_low, ci_high, n. Raters with no usable
    stimulus for a dimension are left out of that dimension.
    """
    scores = scores or loo_scores(data, boot, ties)
    parts = []
    for (dimension, metric), point in scores.point.items():
        values = _rows(boot, point, scores.replicates[dimension, metric])
        part = pd.DataFrame({"rater": data.raters, "dimension": dimension, "metric": metric,
                             **values, "n": scores.n[dimension, metric].astype(int)})
        parts.append(part[part["n"] > 0])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
