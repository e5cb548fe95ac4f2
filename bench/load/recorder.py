"""The generator's latency recorder: one list append per message on the hot path.

HdrHistogram's ``record_value`` costs about 0.8 µs in Python (shared/FIELD-NOTES.md), more than
the budget of 0.5 µs per message. So the hot path appends the raw nanosecond difference to an
``array`` and ``flush`` moves the batch into the histogram with numpy, off the hot path, about
once a second. No sample is dropped: every appended value reaches the histogram.
"""

from __future__ import annotations

from array import array

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.metrics import histogram as hist

NS_PER_US = 1000


class LatencyRecorder:
    """Collects nanosecond latencies; ``append`` is the hot-path entry."""

    __slots__ = ("_pending", "append", "clamped", "histogram")

    def __init__(self) -> None:
        self._pending: array[int] = array("q")
        self.append = self._pending.append
        self.histogram: HdrHistogram = hist.new_histogram()
        self.clamped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Move pending samples into the histogram, rounded to the nearest microsecond."""
        if not self._pending:
            return
        values_ns = np.frombuffer(self._pending, dtype=np.int64)
        values_us = (values_ns + NS_PER_US // 2) // NS_PER_US
        self.clamped += hist.record_many(self.histogram, values_us)
        del values_ns, values_us  # release the buffer export before resizing the array
        del self._pending[:]
