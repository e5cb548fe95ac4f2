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


def p99_ms_in_window(samples: list[tuple[int, int]], start_ns: int, end_ns: int) -> float:
    lags = [lag for t, lag in samples if start_ns <= t <= end_ns]
    if not lags:
        return math.nan
    return float(np.percentile(np.asarray(lags, dtype=float), 99)) / 1e6
