from __future__ import annotations

import math

from bench.results import messages_per_cpu_second


def test_messages_per_cpu_second_is_throughput_over_the_cpu_used() -> None:
    assert messages_per_cpu_second(4_000, 50.0) == 8_000  # half a core for 4,000 msgs/s
    assert messages_per_cpu_second(30_000, 100.0) == 30_000
    assert math.isnan(messages_per_cpu_second(4_000, math.nan))  # not sampled
    assert math.isnan(messages_per_cpu_second(4_000, 0.0))
