from __future__ import annotations

import asyncio
from time import monotonic_ns

import uvloop

from bench.load.alarm import Alarm


def test_alarm_never_wakes_early_and_is_finer_than_the_loops_millisecond_timers() -> None:
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
    # Most wake-ups within 0.5 ms of the due time; the loop's timers would add about 1 ms to
    # a sleep or not sleep at all. (A ratio to the loop's own behaviour, not a speed budget.)
    assert sorted(lateness)[len(lateness) // 2] < 500_000


def test_alarm_in_the_past_fires_at_once() -> None:
    async def main() -> None:
        alarm = Alarm()
        try:
            await asyncio.wait_for(alarm.sleep_until(monotonic_ns() - 1_000_000), 1.0)
        finally:
            alarm.close()

    uvloop.run(main())
