"""Latency histograms: HdrHistograms in whole microseconds, bulk recording, exact merging.

Workers ship encoded histograms (HdrHistogram's compressed V2 format) and the coordinator adds
them, so percentiles of a multi-process run equal those of all samples recorded together; no
percentile is ever averaged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: no latency a bounded run can see is out of range
SIGNIFICANT_FIGURES = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record_many(histogram: HdrHistogram, values_us: np.ndarray) -> int:
    """Record integer microsecond values; returns how many were clamped into range.

    Counting equal values first turns millions of samples into a few thousand
    ``record_value(value, count)`` calls: that is what keeps recording off the hot path.
    """
    if values_us.size == 0:
        return 0
    clamped = int(np.count_nonzero((values_us < 0) | (values_us > HIGHEST_US)))
    values, counts = np.unique(np.clip(values_us, 0, HIGHEST_US), return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    return clamped


def encode(histogram: HdrHistogram) -> str:
    blob: bytes = histogram.encode()
    return blob.decode("ascii")


def decode(blob: str) -> HdrHistogram:
    histogram: HdrHistogram = HdrHistogram.decode(blob.encode("ascii"))
    return histogram


def merge(blobs: Iterable[str]) -> HdrHistogram:
    """Add encoded histograms together: exact, counts are summed bucket by bucket."""
    merged = new_histogram()
    for blob in blobs:
        merged.add(decode(blob))
    return merged


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float


PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9}


def summarize(histogram: HdrHistogram) -> LatencySummary:
    """Percentiles as HdrHistogram reports them (3 significant figures); NaN when empty."""
    count = int(histogram.get_total_count())
    if count == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan, nan)
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
    return LatencySummary(
        count=count,
        p50_us=float(values[50.0]),
        p90_us=float(values[90.0]),
        p99_us=float(values[99.0]),
        p999_us=float(values[99.9]),
        max_us=float(histogram.get_max_value()),
        mean_us=float(histogram.get_mean_value()),
    )
