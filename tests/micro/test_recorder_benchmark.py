"""The recording cost on the generator's hot path (budget: 0.5 µs per message), beside
HdrHistogram's own record_value for the same values (about 0.8 µs in Python, FIELD-NOTES).

`make micro` runs these with timing on, prints ns per message and compares each with the saved
baseline; under `make test` each runs once and checks that every value was recorded. No test
asserts a time: that the recorder stores what recording one by one stores is
tests/unit/load/test_recorder.py.
"""

from __future__ import annotations

from typing import Any

from bench.load.recorder import LatencyRecorder
from bench.metrics import histogram as hist

BATCH = 100_000
VALUES_NS = [1_000 + (i * 7919) % 5_000_000 for i in range(BATCH)]


def record_batch_with_recorder() -> int:
    recorder = LatencyRecorder()
    append = recorder.append
    for value in VALUES_NS:
        append(value)
    recorder.flush()  # the amortised bulk insert is counted too
    return int(recorder.histogram.get_total_count())


def record_batch_one_by_one() -> int:
    histogram = hist.new_histogram()
    record = histogram.record_value
    for value in VALUES_NS:
        record(value // 1000)
    return int(histogram.get_total_count())


def report_ns_per_message(benchmark: Any, what: str) -> None:
    benchmark.extra_info["messages_per_call"] = BATCH
    if benchmark.stats is not None:  # timing enabled (make micro)
        ns_per_message = benchmark.stats.stats.mean / BATCH * 1e9
        benchmark.extra_info["ns_per_message"] = round(ns_per_message, 1)
        print(f"\n{what}: {ns_per_message:.0f} ns per message")


def test_recorder_cost_per_message(benchmark: Any) -> None:
    assert benchmark(record_batch_with_recorder) == BATCH
    report_ns_per_message(benchmark, "recording cost (append + amortised flush)")


def test_hdrhistogram_record_value_cost_per_message(benchmark: Any) -> None:
    assert benchmark(record_batch_one_by_one) == BATCH
    report_ns_per_message(benchmark, "HdrHistogram's record_value, one by one")
