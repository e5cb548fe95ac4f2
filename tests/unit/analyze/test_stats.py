from __future__ import annotations

import math

import pytest

from bench.analyze.stats import (
    coefficient_of_variation,
    fit_line,
    median_interval,
    paired_ratios,
    ratio_of_sums_interval,
)


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
    one = median_interval([5.0, math.nan])  # NaN values are not data
    assert (one.median, one.n) == (5.0, 1)
    # One value is no interval: its bounds are NaN, not a zero-width "certainty".
    assert math.isnan(one.low) and math.isnan(one.high)
    assert math.isnan(median_interval([]).median)
    assert math.isnan(coefficient_of_variation([1.0]))


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([90.0, 100.0, 110.0]) == pytest.approx(0.1)


def test_paired_ratios_skip_missing_and_zero() -> None:
    assert paired_ratios([10.0, 20.0, math.nan, 5.0], [5.0, 0.0, 1.0, 10.0]) == [2.0, 0.5]


def test_a_line_through_exact_points_is_found_with_a_point_interval() -> None:
    fit = fit_line([0, 1000, 2000, 5000], [50.0, 60.0, 70.0, 100.0])
    assert fit.slope == pytest.approx(0.01) and fit.intercept == pytest.approx(50.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.slope_ci_low == pytest.approx(0.01) and fit.slope_ci_high == pytest.approx(0.01)


def test_the_slope_interval_matches_the_textbook_t_interval() -> None:
    # x = 0..4, y about 2x: the interval is slope +- t(0.975, 3 df) * its standard error.
    xs, ys = [0, 1, 2, 3, 4], [0.2, 1.9, 4.3, 6.1, 8.5]
    fit = fit_line(xs, ys)
    n = 5
    mean_x = sum(xs) / n
    slope = sum((x - mean_x) * y for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    intercept = sum(ys) / n - slope * mean_x
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(residual / (n - 2) / sum((x - mean_x) ** 2 for x in xs))
    t_975_3df = 3.182446305284263
    assert fit.slope == pytest.approx(slope)
    assert fit.slope_ci_low == pytest.approx(slope - t_975_3df * se)
    assert fit.slope_ci_high == pytest.approx(slope + t_975_3df * se)
    assert 0.99 < fit.r2 < 1.0


def test_too_few_points_fit_nothing() -> None:
    assert math.isnan(fit_line([1000], [5.0]).slope)
    assert math.isnan(fit_line([1000, 1000], [5.0, 6.0]).slope)
    two = fit_line([0, 10], [1.0, 2.0])
    assert two.slope == pytest.approx(0.1) and math.isnan(two.slope_ci_low)


def test_a_ratio_of_sums_is_the_whole_pass_ratio_with_a_bootstrap_interval() -> None:
    tops = [10.0, 12.0, 9.0, 30.0, 11.0, 10.0]
    bottoms = [20.0, 20.0, 20.0, 40.0, 20.0, 22.0]
    interval = ratio_of_sums_interval(tops, bottoms)
    assert interval.median == pytest.approx(sum(tops) / sum(bottoms))
    assert interval.n == 6
    assert interval.low < interval.median < interval.high
    assert interval.contains(interval.median)
    # Resampled in pairs: the same numbers give the same interval (fixed seed).
    assert ratio_of_sums_interval(tops, bottoms) == interval


def test_a_ratio_of_sums_that_is_the_same_every_round_has_a_point_interval() -> None:
    interval = ratio_of_sums_interval([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert (interval.median, interval.low, interval.high) == pytest.approx((0.5, 0.5, 0.5))


def test_a_ratio_of_sums_without_two_clean_pairs_has_no_interval() -> None:
    one = ratio_of_sums_interval([3.0], [4.0])
    assert one.median == 0.75 and math.isnan(one.low) and math.isnan(one.high)
    for tops, bottoms in (([], []), ([1.0, 2.0], [0.0, 0.0]), ([1.0, math.nan], [1.0, 1.0]),
                          ([1.0, 2.0], [1.0])):  # fmt: skip
        interval = ratio_of_sums_interval(tops, bottoms)
        assert math.isnan(interval.median) and math.isnan(interval.low), (tops, bottoms)
