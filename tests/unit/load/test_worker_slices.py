"""The fast worker's time-sliced closed loop, driven against stand-in connections (no
sockets) on a virtual clock: it may send only inside its own slices."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import uvloop

from bench.load import worker
from bench.load.client import EchoConnection
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
