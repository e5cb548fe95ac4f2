"""Process sampling: the window arithmetic and this process's own CPU clock. (Another
process's CPU time: tests/integration/test_sampling.py.)"""

from __future__ import annotations

import math
import os
import time

import psutil
import pytest

from bench.metrics.sampling import (
    ProcessSampler,
    Sample,
    cpu_seconds_spanning,
    process_cpu_s,
    rss_growth,
    window_memory,
    window_steal_pct,
    window_usage,
)


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


def test_process_cpu_is_read_from_the_nanosecond_process_clock() -> None:
    # Bracketed by this process's own CPU clock: a tick-counted figure (10 ms steps)
    # would not fall between two readings taken microseconds apart.
    me = psutil.Process()
    for _ in range(20):
        before = time.process_time()
        read = process_cpu_s(me)
        after = time.process_time()
        assert before <= read <= after


def test_process_cpu_falls_back_to_psutil_when_the_clock_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(clock_id: int) -> float:
        raise OSError(22, "Invalid argument")

    me = psutil.Process()
    monkeypatch.setattr(time, "clock_gettime", refuse)
    times = me.cpu_times()
    assert process_cpu_s(me) == pytest.approx(times.user + times.system, abs=0.05)


def test_usage_per_active_time_scales_cpu_only() -> None:
    samples = [Sample(t * 100_000_000, cpu_s=t * 0.025, rss_bytes=500) for t in range(11)]
    usage = window_usage(samples, 0, 1_000_000_000).per_active(0.25)
    # 25% of the window's core, all of it spent in the quarter of the time it was loaded.
    assert math.isclose(usage.cpu_pct, 100.0)
    assert usage.rss_max_bytes == 500 and usage.samples == 11


def test_steal_is_the_share_of_the_window_the_hypervisor_took_from_the_cpus() -> None:
    # CPU 0 loses 0.02 s per 0.1 s sample (20%), CPU 1 nothing; samples every 0.1 s.
    samples = [(t * 100_000_000, [t * 0.02, 0.0]) for t in range(11)]
    assert math.isclose(window_steal_pct(samples, (0,), 0, 1_000_000_000), 20.0)
    assert math.isclose(window_steal_pct(samples, (0, 1), 0, 1_000_000_000), 10.0)
    assert math.isnan(window_steal_pct(samples, (), 0, 1_000_000_000))  # unpinned
    assert math.isnan(window_steal_pct(samples[:1], (0,), 0, 1_000_000_000))


def test_cpu_seconds_spanning_a_burst_shorter_than_the_sampling_interval() -> None:
    samples = [Sample(0, 1.0, 1), Sample(100, 1.5, 1), Sample(200, 1.75, 1)]
    # A burst from 120 to 150 ns has no sample inside; the samples around it hold its work.
    assert cpu_seconds_spanning(samples, 120, 150) == 0.25
    assert cpu_seconds_spanning(samples, 100, 200) == 0.25
    assert cpu_seconds_spanning(samples, 50, 150) == 0.75
    assert math.isnan(cpu_seconds_spanning(samples, 150, 250))  # nothing after the end


def test_window_memory_is_the_median_of_the_samples_inside() -> None:
    samples = [Sample(t, 0.0, rss_bytes=1000 * t, uss_bytes=100 * t) for t in range(10)]
    assert window_memory(samples, 2, 6) == (4000.0, 400.0)
    rss_only = [Sample(t, 0.0, rss_bytes=5) for t in range(3)]
    rss, uss = window_memory(rss_only, 0, 2)
    assert rss == 5.0 and math.isnan(uss)
    assert all(math.isnan(v) for v in window_memory(samples, 20, 30))


def test_rss_growth_is_the_rise_above_the_first_sample_in_the_window() -> None:
    samples = [Sample(t, 0.0, rss_bytes=rss) for t, rss in enumerate([50, 40, 70, 60])]
    assert rss_growth(samples, 1, 3) == 30.0
    assert math.isnan(rss_growth(samples, 10, 20))
