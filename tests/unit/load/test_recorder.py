from __future__ import annotations

import random

from bench.load.recorder import LatencyRecorder
from bench.metrics import histogram as hist


def test_flush_keeps_every_sample_rounded_to_microseconds() -> None:
    recorder = LatencyRecorder()
    for value_ns in (1_499, 1_500, 250_000, 0):
        recorder.append(value_ns)
    recorder.flush()
    assert len(recorder) == 0
    h = recorder.histogram
    assert h.get_total_count() == 4
    assert h.get_count_at_value(1) == 1  # 1.499 µs -> 1
    assert h.get_count_at_value(2) == 1  # 1.5 µs -> 2
    assert h.get_count_at_value(250) == 1
    assert h.get_min_value() == 0


def test_recorder_equals_recording_one_by_one() -> None:
    rng = random.Random(7)
    samples_ns = [rng.randrange(1_000, 50_000_000) for _ in range(20_000)]
    recorder = LatencyRecorder()
    for value in samples_ns[:10_000]:
        recorder.append(value)
    recorder.flush()  # two flushes accumulate
    for value in samples_ns[10_000:]:
        recorder.append(value)
    recorder.flush()
    direct = hist.new_histogram()
    for value in samples_ns:
        direct.record_value((value + 500) // 1000)
    assert hist.encode(recorder.histogram) == hist.encode(direct)


def test_out_of_range_values_are_clamped_and_counted() -> None:
    recorder = LatencyRecorder()
    recorder.append(-5_000)
    recorder.append((hist.HIGHEST_US + 10) * 1000)
    recorder.flush()
    assert recorder.clamped == 2
    assert recorder.histogram.get_total_count() == 2
