"""Reconnect storms: the shared backoff and the recovery figures (pure)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from bench.load.reconnect import Backoff, recovery


def test_delays_follow_python_socketios_algorithm() -> None:
    backoff = Backoff(delay_s=0.5, delay_max_s=5.0, randomization_s=0.5)
    delays = list(itertools.islice(backoff.delays(random.Random(7)), 8))
    draws = random.Random(7)
    # python-socketio: the delay doubles from reconnection_delay, is capped at
    # reconnection_delay_max, then shifted by randomization_factor * (2 * random() - 1).
    expected = [min(0.5 * 2**n, 5.0) + 0.5 * (2 * draws.random() - 1) for n in range(8)]
    assert delays == pytest.approx([max(0.0, d) for d in expected])
    assert all(d >= 0 for d in delays)


def test_delays_without_randomization_double_up_to_the_cap() -> None:
    backoff = Backoff(delay_s=1.0, delay_max_s=5.0, randomization_s=0.0)
    assert list(itertools.islice(backoff.delays(), 5)) == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_recovery_times_count_from_the_kill() -> None:
    kill = 10_000_000_000
    recovered = [kill + int(s * 1e9) for s in (0.5, 1.0, 1.5, 2.0)]
    found = recovery(kill, recovered)
    assert (found.p50_s, found.p99_s, found.all_s) == (1.0, 2.0, 2.0)
    assert (found.recovered, found.clients) == (4, 4)


def test_clients_that_never_recovered_leave_the_shares_they_block_unknown() -> None:
    kill = 0
    found = recovery(kill, [int(1e9), int(2e9), -1, -1])
    assert found.p50_s == 2.0  # two of four is half
    assert math.isnan(found.p99_s) and math.isnan(found.all_s)
    assert found.recovered == 2
