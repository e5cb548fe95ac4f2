from __future__ import annotations

import math

import pytest

from bench.analyze.stats import coefficient_of_variation, median_interval, paired_ratios


def test_interval_brackets_the_median_and_is_reproducible() -> None:
    values = [100.0, 102.0, 98.0, 101.0, 99.0, 150.0, 100.5]
    interval = median_interval(values)
    assert interval.median == 100.5
    assert interval.low <= interval.median <= interval.high
    assert interval.low >= 98.0 and interval.high <= 150.0
    assert median_interval(values) == interval  # fixed seed


def test_three_repeats_give_an_interval_as_wide_as_the_data() -> None:
    interval = median_interval([10.0, 20.0, 30.0])
    assert (interval.low, interval.median, interval.high) == (10.0, 20.0, 30.0)


def test_degenerate_inputs() -> None:
    assert median_interval([5.0]) == median_interval([5.0, math.nan])
    assert median_interval([5.0]).low == 5.0
    assert math.isnan(median_interval([]).median)
    assert math.isnan(coefficient_of_variation([1.0]))


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([90.0, 100.0, 110.0]) == pytest.approx(0.1)


def test_paired_ratios_skip_missing_and_zero() -> None:
    assert paired_ratios([10.0, 20.0, math.nan, 5.0], [5.0, 0.0, 1.0, 10.0]) == [2.0, 0.5]
