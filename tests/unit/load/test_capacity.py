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
    assert len(search.history) == 6  # every failure was seen twice before it counted


def test_one_stalled_probe_does_not_drag_the_search_down() -> None:
    capacity = 7_000.0
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=10_000, steps=8)
    stalled = False
    while not search.done:
        rate = search.next_rate()
        outcome = server_with_capacity(capacity, rate)
        if not stalled:  # the very first probe, well below capacity, hits a 50 ms pause
            outcome, stalled = ProbeOutcome(rate, 50_000, 0, rate), True
        search.record(outcome)
    assert search.history[0].rate_msgs_s == search.history[1].rate_msgs_s  # retried
    assert search.best is not None and search.best.rate_msgs_s > 0.9 * capacity


def test_upper_bound_grows_when_the_open_loop_beats_the_closed_loop() -> None:
    # The closed loop said 10k msgs/s; the server sustains 25k in open loop.
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=10_000, steps=12)
    while not search.done:
        search.record(server_with_capacity(25_000, search.next_rate()))
    assert search.best is not None
    assert 0.9 * 25_000 < search.best.rate_msgs_s <= 25_000


def test_search_is_bounded_even_when_every_probe_flips() -> None:
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=1_000, steps=5)
    verdicts = iter([False, True] * 20)
    while not search.done:
        rate = search.next_rate()
        ok = next(verdicts)
        search.record(ProbeOutcome(rate, 1_000 if ok else 90_000, 0, rate))
    assert len(search.history) <= 3 * 5  # at most three probes per decision


def test_one_lucky_pass_above_the_capacity_does_not_raise_the_search() -> None:
    capacity = 5_000.0
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=10_000, steps=8)
    lucky = True
    while not search.done:
        rate = search.next_rate()
        outcome = server_with_capacity(capacity, rate)
        if lucky and rate > capacity:  # the core ran fast for a moment: a too-high rate passes
            outcome, lucky = ProbeOutcome(rate, 2_000, 0, rate), False
        search.record(outcome)
    assert not lucky  # the lucky probe happened
    assert search.best is not None and search.best.rate_msgs_s <= capacity


def test_the_reported_probe_is_the_less_flattering_of_the_passing_pair() -> None:
    search = CapacitySearch.from_closed_loop(slo_p99_ms=10, closed_loop_msgs_s=1_000, steps=1)
    rate = search.next_rate()
    search.record(ProbeOutcome(rate, 3_000, 0, rate))
    assert not search.done  # one probe decides nothing
    search.record(ProbeOutcome(rate, 7_000, 0, rate))
    assert search.done and search.best is not None and search.best.p99_us == 7_000
