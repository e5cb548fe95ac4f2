from __future__ import annotations

import pytest

from bench.load.schedule import NS_PER_S, OpenLoopSchedule, constant_rate


def test_constant_rate_times() -> None:
    schedule = constant_rate(start_ns=1_000, rate_msgs_s=4, duration_s=2)
    assert schedule.count == 8
    assert [schedule.intended_ns(i) for i in range(3)] == [
        1_000,
        1_000 + NS_PER_S // 4,
        1_000 + NS_PER_S // 2,
    ]
    assert schedule.end_ns == 1_000 + 2 * NS_PER_S
    assert schedule.rate_msgs_s == pytest.approx(4)


def test_due_count_counts_messages_whose_time_has_come() -> None:
    schedule = constant_rate(start_ns=0, rate_msgs_s=1000, duration_s=1)
    assert schedule.due_count(-1) == 0
    assert schedule.due_count(0) == 1
    assert schedule.due_count(999_999) == 1
    assert schedule.due_count(1_000_000) == 2
    assert schedule.due_count(10 * NS_PER_S) == 1000  # never more than the schedule holds


def test_due_count_agrees_with_intended_times_at_awkward_rates() -> None:
    schedule = constant_rate(start_ns=17, rate_msgs_s=3333.3, duration_s=1)
    for index in range(schedule.count):
        t = schedule.intended_ns(index)
        assert schedule.due_count(t) == index + 1
        assert schedule.due_count(t - 1) == index


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_worker_shares_add_up_to_the_whole_schedule(workers: int) -> None:
    whole = constant_rate(start_ns=5, rate_msgs_s=997, duration_s=3)
    shares = [whole.share(w, workers) for w in range(workers)]
    times = sorted(s.intended_ns(k) for s in shares for k in range(s.count))
    assert times == [whole.intended_ns(i) for i in range(whole.count)]
    for share in shares:
        assert share.rate_msgs_s == pytest.approx(997 / workers)


def test_share_of_share_and_bad_arguments() -> None:
    whole = constant_rate(0, 100, 1)
    quarter = whole.share(1, 2).share(0, 2)
    assert [quarter.intended_ns(k) for k in range(quarter.count)] == [
        whole.intended_ns(i) for i in range(1, 100, 4)
    ]
    with pytest.raises(ValueError):
        whole.share(2, 2)
    with pytest.raises(ValueError):
        OpenLoopSchedule(0, 0.0, 1)
    with pytest.raises(ValueError):
        constant_rate(0, 0, 1)
