"""The fast worker's time-sliced closed loop, driven against stand-in connections (no
sockets) on a virtual clock: it may send only inside its own slices."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import uvloop

from bench.load import worker
from bench.load.client import EchoConnection, Tally
from bench.load.engine import round_counts
from bench.load.slices import SliceSchedule
from bench.load.worker import run_closed_slices

ORIGIN_NS = 10**12


class VirtualClock:
    """The worker's clock and alarm: sleeping until a time moves the clock there at once, so
    when each send happens follows from the schedule, not from how promptly a busy host wakes
    a process (a 20-ms slice is shorter than a time slice the host may take away). The real
    alarm's wake-ups: tests/unit/load/test_alarm.py."""

    def __init__(self) -> None:
        self.now_ns = ORIGIN_NS

    def monotonic_ns(self) -> int:
        return self.now_ns

    async def sleep_until(self, t_ns: int) -> None:
        self.now_ns = max(self.now_ns, t_ns)
        await asyncio.sleep(0)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(worker, "monotonic_ns", virtual.monotonic_ns)
    monkeypatch.setattr(worker, "Alarm", lambda: virtual)
    return virtual


class StandIn:
    """Keeps EchoConnection's send rule (nothing from window_end_ns on) and never echoes."""

    def __init__(self) -> None:
        self.window_end_ns = 2**62
        self.outstanding: dict[Any, int] = {}
        self.sent_at: list[int] = []
        self.received = 0

    def send(self, t_ns: int) -> None:
        if t_ns >= self.window_end_ns:
            return
        self.outstanding[len(self.sent_at)] = t_ns
        self.sent_at.append(t_ns)


def test_sends_happen_only_inside_the_workers_own_slices() -> None:
    schedule = SliceSchedule.plan(slot=1, slots=2, slice_s=0.02, warmup_s=0, duration_s=0.06)
    connections = [StandIn() for _ in range(3)]

    async def main() -> list[tuple[int, int]]:
        intervals = schedule.intervals(ORIGIN_NS + 5_000_000)
        for connection in connections:
            # One message still awaiting its echo from before: the top-up counts it.
            connection.outstanding["earlier"] = 0
        await run_closed_slices(
            cast(list[EchoConnection], connections), inflight=4, intervals=intervals
        )
        return intervals

    intervals = uvloop.run(main())
    for connection in connections:
        # Topped up to 4 in flight in the first slice (3 new), then never again: the stand-in
        # never echoes, so its messages stay outstanding.
        assert len(connection.sent_at) == 3
        for t in connection.sent_at:
            assert any(start <= t < end for start, end in intervals), (t, intervals)
        assert connection.window_end_ns == intervals[-1][1]


def test_each_slice_tops_connections_up_again() -> None:
    schedule = SliceSchedule.plan(slot=0, slots=3, slice_s=0.02, warmup_s=0, duration_s=0.06)
    connection = StandIn()

    async def main() -> list[tuple[int, int]]:
        intervals = schedule.intervals(ORIGIN_NS + 5_000_000)
        sends = connection.send

        def send_and_forget(t_ns: int) -> None:  # as if every echo came back at once
            sends(t_ns)
            connection.outstanding.clear()

        connection.send = send_and_forget  # type: ignore[method-assign]
        await run_closed_slices(cast(list[EchoConnection], [connection]), 2, intervals)
        return intervals

    intervals = uvloop.run(main())
    per_slice = [sum(start <= t < end for t in connection.sent_at) for start, end in intervals]
    assert per_slice == [2, 2, 2]


def test_the_echoes_counted_are_noted_at_each_measured_slices_start() -> None:
    schedule = SliceSchedule.plan(slot=0, slots=2, slice_s=0.02, warmup_s=0.04, duration_s=0.06)
    assert (schedule.warmup_rounds, schedule.measured_rounds) == (2, 3)
    connections = [StandIn(), StandIn()]
    tally = Tally()

    async def main() -> None:
        intervals = schedule.intervals(ORIGIN_NS + 5_000_000)
        originals = [c.send for c in connections]
        for connection, send in zip(connections, originals, strict=True):

            def echo_at_once(t_ns: int, c: StandIn = connection, s: Any = send) -> None:
                s(t_ns)
                c.outstanding.clear()
                c.received += 1  # counted as the echo would be, warm-up slices included

            connection.send = echo_at_once  # type: ignore[method-assign]
        await run_closed_slices(
            cast(list[EchoConnection], connections), 1, intervals, tally,
            schedule.warmup_rounds,
        )  # fmt: skip

    for connection in connections:
        connection.received = 0
    uvloop.run(main())
    # Two warm-up slices (one message per connection each) before the first mark, then one
    # mark per measured slice, before its top-up.
    assert tally.round_marks == [4, 6, 8]
    assert round_counts(tally.round_marks, 10) == [2, 2, 2]


def test_round_counts_are_the_differences_up_to_the_final_total() -> None:
    assert round_counts([], 50) == []
    assert round_counts([0, 10, 25], 40) == [10, 15, 15]
