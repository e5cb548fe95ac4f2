from __future__ import annotations

import math
import os

from bench.metrics.sampling import ProcessSampler, Sample, window_usage


def test_window_usage_uses_samples_inside_the_window() -> None:
    samples = [Sample(t * 100_000_000, cpu_s=t * 0.05, rss_bytes=1000 + t) for t in range(20)]
    usage = window_usage(samples, start_ns=500_000_000, end_ns=1_500_000_000)
    assert math.isclose(usage.cpu_pct, 50.0)
    assert usage.rss_max_bytes == 1015
    assert usage.samples == 11


def test_window_without_samples_is_nan() -> None:
    usage = window_usage([Sample(0, 0.0, 1)], 10, 20)
    assert math.isnan(usage.cpu_pct) and usage.samples == 0


def test_sampler_reads_this_process() -> None:
    sampler = ProcessSampler({"me": os.getpid()})
    sampler.sample_once()
    sum(i * i for i in range(200_000))
    sampler.sample_once()
    first, last = sampler.samples["me"]
    assert last.t_ns > first.t_ns and last.cpu_s >= first.cpu_s and last.rss_bytes > 0
