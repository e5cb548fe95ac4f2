"""Statistics over repeats (and the rounds of one time-sliced pass): medians with bootstrap
confidence intervals, CV (pure, numpy only).

The bootstrap uses a fixed seed so that the same numbers always give the same interval: a
report rebuilt from stored results must not change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 20261121


@dataclass(frozen=True)
class Interval:
    median: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    kept: np.ndarray = array[~np.isnan(array)]
    return kept


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The median and a percentile-bootstrap interval for it; NaN bounds with no data.

    One value gives no interval (NaN bounds): a zero-width "interval" would read as certainty.
    With few repeats it is as wide as the data allow (with 3 repeats, between the smallest and
    largest), which is the honest answer.
    """
    data = _clean(values)
    if data.size == 0:
        nan = math.nan
        return Interval(nan, nan, nan, 0)
    median = float(np.median(data))
    if data.size == 1:
        return Interval(median, math.nan, math.nan, 1)
    rng = np.random.default_rng(SEED)
    resamples = rng.choice(data, size=(BOOTSTRAP_RESAMPLES, data.size), replace=True)
    medians = np.median(resamples, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return Interval(median, float(low), float(high), int(data.size))


def ratio_of_sums_interval(
    numerators: Sequence[float], denominators: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """sum(numerators) / sum(denominators) and a percentile-bootstrap interval for it, the
    pairs resampled together (the rounds of one time-sliced pass: each pair was measured in
    the same round). The estimate is the whole pass's ratio, so it always lies in its interval,
    which a median of per-round ratios need not. NaN bounds with fewer than two pairs; NaN
    throughout when a pair has a NaN or the denominators sum to zero."""
    top, bottom = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    nan = math.nan
    if top.shape != bottom.shape or np.isnan(top).any() or np.isnan(bottom).any():
        return Interval(nan, nan, nan, 0)
    if top.size == 0 or float(bottom.sum()) == 0:
        return Interval(nan, nan, nan, int(top.size))
    estimate = float(top.sum() / bottom.sum())
    if top.size == 1:
        return Interval(estimate, nan, nan, 1)
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, top.size, size=(BOOTSTRAP_RESAMPLES, top.size))
    sums_bottom = bottom[picks].sum(axis=1)
    valid = sums_bottom > 0
    ratios = top[picks].sum(axis=1)[valid] / sums_bottom[valid]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), int(top.size))


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over mean; NaN with fewer than two values or a zero mean."""
    data = _clean(values)
    if data.size < 2 or float(np.mean(data)) == 0:
        return math.nan
    return float(np.std(data, ddof=1) / np.mean(data))


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratios of values taken in the same repeat (interleaving makes them a fair pair)."""
    return [
        n / d
        for n, d in zip(numerators, denominators, strict=False)
        if not (math.isnan(n) or math.isnan(d)) and d != 0
    ]


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = intercept + slope * x`` with the slope's confidence interval
    (Student's t on n - 2 degrees of freedom) and R²; NaN where the points do not allow it."""

    slope: float
    intercept: float
    slope_ci_low: float
    slope_ci_high: float
    r2: float
    n: int


def fit_line(xs: Sequence[float], ys: Sequence[float], confidence: float = CONFIDENCE) -> LineFit:
    """Fit a line through the points (scipy's linregress); with two points the line is exact
    and its interval unknown (NaN); with fewer, or all x equal, nothing is fitted."""
    from scipy import stats as scipy_stats  # imported here: only memory rows need it

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    nan = math.nan
    if x.size < 2 or np.all(x == x[0]):
        return LineFit(nan, nan, nan, nan, nan, int(x.size))
    result = scipy_stats.linregress(x, y)
    slope, intercept = float(result.slope), float(result.intercept)
    if x.size == 2:
        return LineFit(slope, intercept, nan, nan, 1.0, 2)
    t = float(scipy_stats.t.ppf((1 + confidence) / 2, x.size - 2))
    half = t * float(result.stderr)
    return LineFit(
        slope, intercept, slope - half, slope + half, float(result.rvalue) ** 2, int(x.size)
    )
