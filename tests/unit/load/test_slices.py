from __future__ import annotations

import itertools
import math

import pytest

from bench.load.slices import NS_PER_S, SliceSchedule


def test_measured_slices_add_up_to_the_duration_exactly() -> None:
    schedule = SliceSchedule.plan(slot=1, slots=4, slice_s=0.2, warmup_s=1.5, duration_s=6)
    assert schedule.measured_rounds == 30
    assert schedule.warmup_rounds == 8  # 1.6 s: warm-up is rounded up, never short
    assert math.isclose(schedule.measured_s, 6.0)
    assert math.isclose(schedule.span_s, 4 * 38 * 0.2)


def test_slices_are_stretched_to_fit_an_awkward_duration() -> None:
    schedule = SliceSchedule.plan(slot=0, slots=2, slice_s=0.3, warmup_s=0, duration_s=1.0)
    assert schedule.measured_rounds == 3 and schedule.warmup_rounds == 0
    assert math.isclose(schedule.measured_s, 1.0, rel_tol=1e-9)


def test_slots_take_turns_without_overlap_and_tile_the_run() -> None:
    slots = 3
    schedules = [SliceSchedule.plan(k, slots, 0.25, 0.5, 1.0, seed=7) for k in range(slots)]
    origin = 10 * NS_PER_S
    every = sorted(i for s in schedules for i in s.intervals(origin))
    assert every[0][0] == origin
    for (_, end), (start, _) in itertools.pairwise(every):
        assert start == end  # back to back: no gap, no overlap
    assert every[-1][1] == origin + round(schedules[0].span_s * NS_PER_S)
    # Every round gives each slot exactly one of its slices.
    for k, schedule in enumerate(schedules):
        owned = [every.index(i) for i in schedule.intervals(origin)]
        assert [index // slots for index in owned] == list(range(schedule.rounds)), k


def test_the_order_is_shuffled_each_round_and_the_same_for_every_worker() -> None:
    schedules = [SliceSchedule.plan(k, 4, 0.1, 0, 4.0, seed=3) for k in range(4)]
    orders = [tuple(s.position(r) for s in schedules) for r in range(schedules[0].rounds)]
    assert all(sorted(order) == [0, 1, 2, 3] for order in orders)
    assert len(set(orders)) > 10  # not one fixed A B C D order
    # Each slot comes first in some rounds: no slot is always next to the same neighbour.
    assert {order.index(0) for order in orders} == {0, 1, 2, 3}
    again = [SliceSchedule.plan(k, 4, 0.1, 0, 4.0, seed=3) for k in range(4)]
    assert [s.intervals(0) for s in again] == [s.intervals(0) for s in schedules]
    other_seed = SliceSchedule.plan(0, 4, 0.1, 0, 4.0, seed=4)
    assert other_seed.intervals(0) != schedules[0].intervals(0)


def test_window_covers_the_measured_slices_and_knows_its_active_share() -> None:
    schedule = SliceSchedule.plan(slot=2, slots=4, slice_s=0.5, warmup_s=1.0, duration_s=2.0)
    intervals = schedule.intervals(0)
    start, end = schedule.window(0)
    assert start == intervals[2][0]  # two warm-up slices come first
    assert end == intervals[-1][1]
    # 4 measured slices of 0.5 s inside the window between them.
    assert math.isclose(schedule.active_fraction(), 2.0 * 1e9 / (end - start))


@pytest.mark.parametrize(
    ("slot", "slots", "slice_s", "warmup_s", "duration_s"),
    [(2, 2, 0.5, 0, 1), (-1, 2, 0.5, 0, 1), (0, 0, 0.5, 0, 1), (0, 2, 0, 0, 1),
     (0, 2, 0.5, -1, 1), (0, 2, 0.5, 0, 0)],
)  # fmt: skip
def test_impossible_schedules_are_refused(
    slot: int, slots: int, slice_s: float, warmup_s: float, duration_s: float
) -> None:
    with pytest.raises(ValueError):
        SliceSchedule.plan(slot, slots, slice_s, warmup_s, duration_s)
