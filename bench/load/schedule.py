"""Open-loop send schedules: when each message is *intended* to leave (pure, no I/O).

Latency in open loop is measured from these intended times, never from the actual send, so a
server stall (or a late generator) shows in the percentiles instead of being coordinated away.
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class OpenLoopSchedule:
    """Messages at a constant rate: message ``k`` of this schedule is message
    ``first + k * stride`` of a global plan whose message ``i`` is due at
    ``start_ns + floor(i * interval_ns)``. A whole plan has ``first=0, stride=1``; a worker's
    share of it keeps the same ``start_ns`` and ``interval_ns``, so times agree to the ns."""

    start_ns: int
    interval_ns: float
    count: int
    first: int = 0
    stride: int = 1

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError("interval must be positive")
        if self.count < 0 or self.first < 0 or self.stride < 1:
            raise ValueError("count, first and stride must be non-negative (stride >= 1)")

    @property
    def rate_msgs_s(self) -> float:
        return NS_PER_S / (self.interval_ns * self.stride)

    def intended_ns(self, index: int) -> int:
        return self.start_ns + int((self.first + index * self.stride) * self.interval_ns)

    @property
    def end_ns(self) -> int:
        """Intended time of the message after the last: when the schedule is over."""
        return self.intended_ns(self.count)

    def due_count(self, now_ns: int) -> int:
        """How many messages are due by ``now_ns`` (intended time <= now), at most ``count``."""
        if self.count == 0 or now_ns < self.intended_ns(0):
            return 0
        elapsed = (now_ns - self.start_ns) / self.interval_ns - self.first
        due = min(int(elapsed / self.stride) + 1, self.count)
        # Floating division may be off by one at an exact boundary: settle on intended_ns.
        while due < self.count and self.intended_ns(due) <= now_ns:
            due += 1
        while due > 0 and self.intended_ns(due - 1) > now_ns:
            due -= 1
        return due

    def share(self, worker_index: int, worker_count: int) -> OpenLoopSchedule:
        """Messages ``k`` of this schedule with ``k % worker_count == worker_index``.

        Workers interleave rather than take consecutive blocks, so each sends at the total
        rate divided by the worker count and together they send exactly this schedule.
        """
        if not 0 <= worker_index < worker_count:
            raise ValueError("worker index out of range")
        count = max(0, (self.count - worker_index + worker_count - 1) // worker_count)
        return OpenLoopSchedule(
            start_ns=self.start_ns,
            interval_ns=self.interval_ns,
            count=count,
            first=self.first + worker_index * self.stride,
            stride=self.stride * worker_count,
        )


def constant_rate(start_ns: int, rate_msgs_s: float, duration_s: float) -> OpenLoopSchedule:
    """``rate_msgs_s`` messages a second for ``duration_s`` seconds from ``start_ns``."""
    if rate_msgs_s <= 0 or duration_s < 0:
        raise ValueError("rate must be positive and duration non-negative")
    return OpenLoopSchedule(start_ns, NS_PER_S / rate_msgs_s, round(duration_s * rate_msgs_s))
