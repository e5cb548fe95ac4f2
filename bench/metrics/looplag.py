"""The servers' event-loop lag (how late a 10 ms timer fired), kept for the measured window.

Servers write ``<monotonic ns> <lag ns>`` lines when they stop (``servers.common``); the same
monotonic clock as the harness's, so the window selects them directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def read_samples(path: Path) -> list[tuple[int, int]]:
    if not path.is_file():
        return []
    samples = []
    for line in path.read_text().splitlines():
        t_ns, _, lag_ns = line.partition(" ")
        if t_ns.isdigit() and lag_ns.lstrip("-").isdigit():
            samples.append((int(t_ns), int(lag_ns)))
    return samples


def lag_ms_in_window(
    samples: list[tuple[int, int]], start_ns: int, end_ns: int
) -> tuple[float, float]:
    """p99 and maximum lag (ms) of the samples taken inside the window; NaN without any.

    A stall of the loop yields a single late sample however long it lasts, so the maximum
    matters: p99 alone would hide a loop that stops for seconds now and then.
    """
    lags = [lag for t, lag in samples if start_ns <= t <= end_ns]
    if not lags:
        return math.nan, math.nan
    values = np.asarray(lags, dtype=float)
    return float(np.percentile(values, 99)) / 1e6, float(values.max()) / 1e6
