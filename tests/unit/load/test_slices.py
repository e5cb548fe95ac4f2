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
    schedules = [SliceSchedule.plan(k, slots, 0.25, 0.5, 1.0) for k in range(slots)]
    origin = 10 * NS_PER_S
    every = sorted(i for s in schedules for i in s.intervals(origin))
    assert every[0][0] == origin
    for (_, end), (start, _) in itertools.pairwise(every):
        assert start == end  # back to back: no gap, no overlap
    assert every[-1][1] == origin + round(schedules[0].span_s * NS_PER_S)
    # A B C A B C ...: slot k owns every third slice, starting with the k-th.
    for k, schedule in enumerate(schedules):
        owned = [every.index(i) for i in schedule.intervals(origin)]
        assert owned == list(range(k, len(every), slots))


def test_window_covers_the_measured_slices_and_knows_its_active_share() -> None:
    schedule = SliceSchedule.plan(slot=2, slots=4, slice_s=0.5, warmup_s=1.0, duration_s=2.0)
    intervals = schedule.intervals(0)
    start, end = schedule.window(0)
    assert start == intervals[2][0]  # two warm-up slices come first
    assert end == intervals[-1][1]
    # 4 measured slices of 0.5 s inside a window of 3 rounds of 2 s plus one slice.
    assert math.isclose(schedule.active_fraction(), 2.0 / 6.5)


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
