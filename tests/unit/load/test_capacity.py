from __future__ import annotations

import pytest

from bench.load.capacity import CapacitySearch, ProbeOutcome


def server_with_capacity(capacity: float, rate: float) -> ProbeOutcome:
    """A model server: meets a 10 ms p99 below its capacity, queues beyond it."""
    if rate <= capacity:
        return ProbeOutcome(rate, p99_us=2_000, errors=0, achieved_msgs_s=rate)
    return ProbeOutcome(rate, p99_us=80_000, errors=0, achieved_msgs_s=capacity)


@pytest.mark.parametrize("capacity", [1_000.0, 7_321.0, 9_900.0])
def test_bisection_converges_below_the_capacity(capacity: float) -> None:
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=10_000, steps=10)
    while not search.done:
        search.record(server_with_capacity(capacity, search.next_rate()))
    assert search.best is not None
    found = search.best.rate_msgs_s
    assert found <= capacity
    assert capacity - found <= 11_000 / 2**10 * 2  # within two final intervals


def test_a_probe_passes_only_with_no_errors_low_p99_and_the_rate_achieved() -> None:
    assert ProbeOutcome(1000, 9_999, 0, 990).passes(slo_p99_ms=10)
    assert not ProbeOutcome(1000, 10_001, 0, 1000).passes(slo_p99_ms=10)
    assert not ProbeOutcome(1000, 100, 1, 1000).passes(slo_p99_ms=10)
    assert not ProbeOutcome(1000, 100, 0, 979).passes(slo_p99_ms=10)  # more than 2% short


def test_nothing_passes_leaves_no_best() -> None:
    search = CapacitySearch.from_closed_loop(1, 1000, steps=3)
    while not search.done:
        search.record(ProbeOutcome(search.next_rate(), 50_000, 0, 0))
    assert search.best is None
    assert search.upper_msgs_s < 1000 * 1.1 / 4
