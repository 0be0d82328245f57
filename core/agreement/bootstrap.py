"""Vectorised percentile bootstrap over stimuli.

One seeded draw gives an (n_boot x n_items) matrix of resample weights: how often each stimulus
appears in each resample. Every statistic here is a function of *sums over stimuli* of
per-stimulus contributions (moments, vote counts, confusion counts, coincidences), so all
resamples of all statistics come from one matrix product ``weights @ contributions``; the full
sample is the same product with weights of one. All estimates of a report share the same
resamples, so differences between estimates (subgroup gaps, with/without a model) get CIs from
the same bootstrap.

Contributions that are integer counts (label one-hots, confusion cells) are passed as integer
arrays: their resample sums are integers below 2**24, which single precision holds exactly, so
they take the faster, smaller single-precision product with bit-identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

Statistic = Callable[[np.ndarray], np.ndarray]
MIN_RESAMPLES = 2  # fewer give no interval (CIs are NaN)
FEW_RESAMPLES = 100  # fewer are flagged in ci_method
COUNT_BLOCK_ENTRIES = 1 << 21  # resample counts are tallied in blocks of about this many draws
EXACT_SINGLE = 1 << 24  # every integer up to this is exact in float32
COLUMN_BLOCK = 512  # contributions are converted or copied this many columns at a time
# Products this narrow cost one pass over the weights whatever their width: they widen the
# single-precision counts instead of making a double copy, zero masked-out rows instead of
# copying weights, and are joined by SumsBatch.
NARROW = 64
ZEROED_MASK_COLUMNS = 256  # masked double products this narrow zero rows, not copy weights
WIDEN_BLOCK_ENTRIES = 1 << 22  # narrow products widen this many resample counts at a time


@dataclass
class Bootstrap:
    """Seeded resampling of stimuli; ``n_boot=0`` turns bootstrap CIs off (they become NaN)."""

    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95
    _single: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _double: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def weights(self, n_items: int) -> np.ndarray:
        """(n_boot, n_items) resample counts in double precision, cached once asked for.

        Double precision: the statistics take differences of sums (variances, sums of squares),
        which single precision turned into garbage on small subgroups (Pearson r of +-inf).
        """
        if n_items not in self._double:
            self._double[n_items] = self.single_weights(n_items).astype(np.float64)
        return self._double[n_items]

    def single_weights(self, n_items: int) -> np.ndarray:
        """(n_boot, n_items) resample counts, drawn once per ``n_items`` from the seed and kept
        in single precision, which holds every count exactly (a count is at most ``n_items``,
        guarded by ``EXACT_SINGLE``) at half the memory of double precision."""
        if n_items > EXACT_SINGLE:
            raise ValueError(f"at most {EXACT_SINGLE} stimuli can be resampled, got {n_items}")
        if n_items not in self._single:
            rng = np.random.default_rng(self.seed)
            # int32 draws are the same stream as int64 ones at half the memory.
            index = rng.integers(0, n_items, size=(self.n_boot, n_items), dtype=np.int32)
            self._single[n_items] = _resample_counts(index, n_items)
        return self._single[n_items]

    def sums(
        self, contributions: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full-sample sums (c,) and resample sums (n_boot, c) of (n_items, c) contributions.

        ``mask`` (n_items,) bool restricts both to a subset of stimuli (a subgroup). Integer
        (or bool) contributions are summed exactly in single precision; any other dtype in
        double precision. Both results are float64.
        """
        contributions, restore = _in_memory_order(np.asarray(contributions))
        if contributions.dtype.kind not in "biu":
            contributions = contributions.astype(np.float64, copy=False)
        n_items, shape = contributions.shape[0], contributions.shape[1:]
        flat = contributions.reshape(n_items, int(np.prod(shape)))
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.all():
                mask = None
        point = flat.sum(axis=0, dtype=np.float64, where=True if mask is None else mask[:, None])
        live = flat.any(axis=0)  # all-zero columns (a dimension nobody rated) sum to zero
        resampled = np.zeros((self.n_boot, flat.shape[1]))
        if live.any():
            product = self._count_product if _exact_in_single(flat) else self._product
            resampled[:, live] = product(flat if live.all() else flat[:, live], mask)
        point, resampled = point.reshape(shape), resampled.reshape((self.n_boot,) + shape)
        if restore is None:
            return point, resampled
        return point.transpose(restore), resampled.transpose((0,) + tuple(a + 1 for a in restore))

    def _product(self, flat: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Double-precision ``weights @ flat`` over the ``mask`` rows.

        A narrow product zeroes the other rows of ``flat``. It widens the single-precision
        counts a block of resamples at a time until a wide product has made the double copy
        (a vote study, without rating scales, never does: 286 MB at 35,708 stimuli).
        """
        if flat.shape[1] > NARROW:
            return self._wide_product(flat, mask)
        if mask is not None:
            flat = np.where(mask[:, None], flat, 0.0)
        n_items = flat.shape[0]
        if n_items in self._double:
            return self._double[n_items] @ flat
        single = self.single_weights(n_items)
        resampled = np.empty((self.n_boot, flat.shape[1]))
        rows = max(1, min(self.n_boot, WIDEN_BLOCK_ENTRIES // max(n_items, 1)))
        # One buffer for every block: a fresh array per block costs page faults (2-7x slower).
        buffer = np.empty((rows, n_items))
        for start in range(0, self.n_boot, rows):
            part = single[start:start + rows]
            block = buffer[:len(part)]
            np.copyto(block, part)
            np.matmul(block, flat, out=resampled[start:start + len(part)])
        return resampled

    def _wide_product(self, flat: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """``_product`` of many columns: with a mask, only the masked columns of the weights are
        multiplied, so a subgroup costs in proportion to its size."""
        weights = self.weights(flat.shape[0])
        if mask is None:
            return weights @ flat
        if flat.shape[1] <= ZEROED_MASK_COLUMNS:  # as fast as compressing, and no copy of weights
            return weights @ np.where(mask[:, None], flat, 0.0)
        # One product: in blocks of resamples, BLAS would pack the contributions once per
        # block (2.2x slower with 5 blocks). np.compress is 4x faster than [:, mask].
        return np.compress(mask, weights, axis=1) @ flat[mask]

    def _count_product(self, flat: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Exact ``weights @ flat`` of integer contributions, in single precision, converting a
        block of columns at a time (no full-size float copy of the contributions). Masks as in
        ``_product``."""
        weights = self.single_weights(flat.shape[0])
        if mask is not None and flat.shape[1] > NARROW:
            weights, flat, mask = np.compress(mask, weights, axis=1), flat[mask], None
        resampled = np.empty((self.n_boot, flat.shape[1]))
        for start in range(0, flat.shape[1], COLUMN_BLOCK):
            block = flat[:, start:start + COLUMN_BLOCK].astype(np.float32)
            if mask is not None:
                block[~mask] = 0
            resampled[:, start:start + block.shape[1]] = weights @ block
        return resampled

    def evaluate(
        self, contributions: np.ndarray, statistic: Statistic, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``statistic`` of the full-sample sums and of every resample's sums.

        ``statistic`` maps an array of sums shaped (..., c) to estimates shaped (..., m...).
        """
        point, resampled = self.sums(contributions, mask)
        with np.errstate(divide="ignore", invalid="ignore"):
            return statistic(point), statistic(resampled)

    @property
    def ci_method(self) -> str:
        """What the ``ci_method`` column says about bootstrap CIs (and why they may be NaN)."""
        if self.n_boot < MIN_RESAMPLES:
            return f"none (n_boot={self.n_boot})"
        note = "" if self.n_boot >= FEW_RESAMPLES else (
            f" ({self.n_boot} resamples: too few for stable bounds, use >= 1000)")
        return "bootstrap percentile" + note

    def interval(self, replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile CI along axis 0, ignoring resamples where a statistic is undefined.

        NaN with fewer than ``MIN_RESAMPLES`` resamples: one resample is not an interval.
        """
        replicates = np.asarray(replicates, dtype=np.float64)
        if self.n_boot < MIN_RESAMPLES:
            replicates = replicates[:0]
        return percentile_interval(replicates, self.confidence)


class SumsBatch:
    """Contributions queued now and summed later, NARROW columns per product.

    A product of a few columns costs one pass over the resample weights, so 60 columns in one
    product cost about what 4 do: a table of many small statistics (a panel per model) queues
    them all, then reads each one's ``Bootstrap.sums``. Masks zero the masked-out rows.
    """

    def __init__(self, boot: Bootstrap) -> None:
        self.boot = boot
        self._queued: list[np.ndarray] = []
        self._shapes: list[tuple[int, ...]] = []
        self._sums: list[tuple[np.ndarray, np.ndarray]] | None = None

    def add(self, contributions: np.ndarray, mask: np.ndarray | None = None) -> int:
        """Queue (n_items, ...) contributions; returns the handle to read their sums with."""
        if self._sums is not None:
            raise RuntimeError("this batch has been summed already: start a new one")
        contributions = np.asarray(contributions, dtype=np.float64)
        flat = contributions.reshape(len(contributions), -1)
        if mask is not None:
            flat = np.where(np.asarray(mask, dtype=bool)[:, None], flat, 0.0)
        self._queued.append(flat)
        self._shapes.append(contributions.shape[1:])
        return len(self._queued) - 1

    def sums(self, handle: int) -> tuple[np.ndarray, np.ndarray]:
        """Full-sample and resample sums of the contributions queued as ``handle``."""
        if self._sums is None:
            self._sums = self._sum_all()
        return self._sums[handle]

    def _sum_all(self) -> list[tuple[np.ndarray, np.ndarray]]:
        points, resampled, width = [], [], 0
        for start, end in _column_groups([flat.shape[1] for flat in self._queued]):
            point, reps = self.boot.sums(np.hstack(self._queued[start:end]))
            points.append(point)
            resampled.append(reps)
        point, reps = np.concatenate(points), np.concatenate(resampled, axis=1)
        results = []
        for flat, shape in zip(self._queued, self._shapes):
            columns = slice(width, width + flat.shape[1])
            width += flat.shape[1]
            results.append((point[columns].reshape(shape),
                            reps[:, columns].reshape((self.boot.n_boot,) + shape)))
        self._queued = []
        return results


def _column_groups(widths: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of queued arrays (start, end) of at most NARROW columns together (an
    array wider than that on its own)."""
    groups, start, width = [], 0, 0
    for index, columns in enumerate(widths):
        if index > start and width + columns > NARROW:
            groups.append((start, index))
            start, width = index, 0
        width += columns
    if widths:
        groups.append((start, len(widths)))
    return groups


def _in_memory_order(contributions: np.ndarray) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """``contributions`` with its per-stimulus axes in memory order, and the permutation that
    puts sums of it back in the given order (None if nothing moved).

    Sums are linear, so a (stimuli, raters, moments) view of an array laid out (stimuli,
    moments, raters), which fills each moment's plane with contiguous writes, is summed
    without the copy a reshape would make.
    """
    if contributions.ndim < 3 or contributions.flags.c_contiguous:
        return contributions, None
    order = sorted(range(1, contributions.ndim), key=lambda axis: -contributions.strides[axis])
    moved = contributions.transpose([0, *order])
    if not moved.flags.c_contiguous:
        return contributions, None
    return moved, tuple(int(a) for a in np.argsort([axis - 1 for axis in order]))


def _exact_in_single(flat: np.ndarray) -> bool:
    """Whether integer contributions have exact single-precision resample sums: every partial
    sum is at most n_items * max |value| (a resample's weights add up to n_items)."""
    if flat.dtype.kind not in "biu" or not flat.size:
        return False
    largest = max(abs(int(flat.max())), abs(int(flat.min())))
    return flat.shape[0] * largest <= EXACT_SINGLE


def _resample_counts(index: np.ndarray, n_items: int) -> np.ndarray:
    """(n_boot, n_items) single-precision counts of each stimulus in each resample's ``index`` row.

    Counted a block of resamples at a time, so no n_boot x n_items int64 temporaries exist
    (at 35,000 stimuli x 1,000 resamples each would take 280 MB).
    """
    counts = np.empty(index.shape, dtype=np.float32)
    block = max(1, COUNT_BLOCK_ENTRIES // max(n_items, 1))
    for start in range(0, index.shape[0], block):
        rows = index[start:start + block].astype(np.int64)
        rows += np.arange(len(rows))[:, None] * n_items
        counts[start:start + len(rows)] = np.bincount(
            rows.ravel(), minlength=rows.size).reshape(len(rows), n_items)
    return counts


def percentile_interval(
    replicates: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds along axis 0 (NaN replicates ignored; all NaN -> NaN).

    Linear interpolation between order statistics, as ``numpy.quantile``'s default, but
    vectorised over every column at once (``numpy.nanquantile`` loops in Python).
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.shape[0] == 0:
        nan = np.full(replicates.shape[1:], np.nan)
        return nan, nan.copy()
    ordered = np.sort(replicates, axis=0)  # NaN sorts last
    valid = (~np.isnan(replicates)).sum(axis=0)
    tail = (1 - confidence) / 2
    return _order_statistic(ordered, valid, tail), _order_statistic(ordered, valid, 1 - tail)


def _order_statistic(ordered: np.ndarray, valid: np.ndarray, q: float) -> np.ndarray:
    position = q * np.maximum(valid - 1, 0)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, np.maximum(valid - 1, 0))
    low = np.take_along_axis(ordered, below[None], axis=0)[0]
    high = np.take_along_axis(ordered, above[None], axis=0)[0]
    fraction = position - below
    with np.errstate(invalid="ignore"):  # infinite replicates: take the order statistic itself
        value = np.where(fraction == 0, low, low + (high - low) * fraction)
    return np.where(valid > 0, value, np.nan)


@dataclass(frozen=True)
class Estimate:
    """One estimate before formatting: identifying keys, full-sample value, resample values.

    ``info`` holds descriptive columns (notes, exclusion counts) that do not identify it.
    """

    keys: dict[str, object]
    point: float
    replicates: np.ndarray
    n: int
    info: dict[str, object] = field(default_factory=dict)


def estimates_frame(estimates: list[Estimate], boot: Bootstrap) -> pd.DataFrame:
    """Tidy frame of estimates: their keys, then estimate, ci_low, ci_high, n, ci_method."""
    if not estimates:
        return pd.DataFrame(columns=["estimate", "ci_low", "ci_high", "n", "ci_method"])
    stacked = np.column_stack([e.replicates for e in estimates]) if boot.n_boot else np.zeros(
        (0, len(estimates))
    )
    low, high = boot.interval(stacked)
    frame = pd.DataFrame([e.keys for e in estimates])
    frame["estimate"] = [float(e.point) for e in estimates]
    frame["ci_low"], frame["ci_high"] = low, high
    frame["n"] = [int(e.n) for e in estimates]
    info = pd.DataFrame([e.info for e in estimates], index=frame.index)
    frame = pd.concat([frame, info], axis=1)
    frame["ci_method"] = boot.ci_method
    return frame
