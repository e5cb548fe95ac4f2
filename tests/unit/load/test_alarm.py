"""bench.load.alarm: the open loop's pacing wakes at its due time, never before."""

from __future__ import annotations

import asyncio
from time import monotonic_ns

import uvloop

from bench.load.alarm import Alarm


def test_alarm_never_wakes_early_even_for_a_sleep_the_loop_would_skip() -> None:
    # How late it wakes (its point: well under the loop's millisecond timers) depends on the
    # host, so it is measured in tests/micro (test_alarm_sleep_of_0_2_ms), not asserted here.
    async def main() -> tuple[bool, list[int]]:
        alarm = Alarm()
        precise = alarm.precise
        lateness = []
        try:
            for _ in range(50):
                due = monotonic_ns() + 200_000  # 0.2 ms: uvloop's own sleep returns at once
                await alarm.sleep_until(due)
                lateness.append(monotonic_ns() - due)
        finally:
            alarm.close()
        return precise, lateness

    precise, lateness = uvloop.run(main())
    assert precise
    assert min(lateness) >= 0


def test_alarm_in_the_past_fires_at_once() -> None:
    async def main() -> None:
        alarm = Alarm()
        try:
            await asyncio.wait_for(alarm.sleep_until(monotonic_ns() - 1_000_000), 1.0)
        finally:
            alarm.close()

    uvloop.run(main())
