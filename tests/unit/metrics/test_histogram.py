from __future__ import annotations

import random

import numpy as np

from bench.metrics import histogram as hist


def test_merging_encoded_histograms_equals_recording_all_samples_together() -> None:
    rng = random.Random(1)
    parts = [[rng.randrange(50, 20_000) for _ in range(5_000)] for _ in range(3)]
    blobs = []
    for part in parts:
        h = hist.new_histogram()
        hist.record_many(h, np.array(part, dtype=np.int64))
        blobs.append(hist.encode(h))
    together = hist.new_histogram()
    hist.record_many(together, np.array([v for p in parts for v in p], dtype=np.int64))
    merged = hist.merge(blobs)
    assert merged.get_total_count() == 15_000
    assert hist.summarize(merged) == hist.summarize(together)


def test_summary_of_known_samples() -> None:
    h = hist.new_histogram()
    hist.record_many(h, np.arange(1, 1001, dtype=np.int64))  # 1..1000 µs
    summary = hist.summarize(h)
    assert summary.count == 1000
    assert summary.p50_us == 500
    assert summary.p90_us == 900
    assert summary.p99_us == 990
    assert summary.p999_us == 999
    assert summary.max_us == 1000
    assert abs(summary.mean_us - 500.5) < 1


def test_empty_summary_is_nan() -> None:
    summary = hist.summarize(hist.new_histogram())
    assert summary.count == 0 and summary.p99_us != summary.p99_us
