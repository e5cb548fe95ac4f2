"""Capacity under an SLO: the highest open-loop rate a server sustains (pure bisection logic).

A rate passes when the run had no errors, its p99 latency (from intended send times) stayed
within the SLO, and the achieved rate came within ``ACHIEVED_TOLERANCE`` of the offered one.
The search bisects between 0 (passes by definition) and a little above the closed-loop
throughput (which an open loop cannot sustain with a bounded latency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACHIEVED_TOLERANCE = 0.02
# The first upper bound: closed-loop throughput with some margin above it.
UPPER_BOUND_FACTOR = 1.1
DEFAULT_STEPS = 7


@dataclass(frozen=True)
class ProbeOutcome:
    rate_msgs_s: float
    p99_us: float
    errors: int
    achieved_msgs_s: float

    def passes(self, slo_p99_ms: float) -> bool:
        return (
            self.errors == 0
            and self.p99_us <= slo_p99_ms * 1000
            and self.achieved_msgs_s >= self.rate_msgs_s * (1 - ACHIEVED_TOLERANCE)
        )


@dataclass
class CapacitySearch:
    """Bisection state: ``next_rate()`` to probe, ``record(outcome)`` what happened."""

    slo_p99_ms: float
    upper_msgs_s: float
    steps: int = DEFAULT_STEPS
    lower_msgs_s: float = 0.0
    best: ProbeOutcome | None = None
    history: list[ProbeOutcome] = field(default_factory=list)

    @classmethod
    def from_closed_loop(
        cls, slo_p99_ms: float, closed_loop_msgs_s: float, steps: int = DEFAULT_STEPS
    ) -> CapacitySearch:
        return cls(slo_p99_ms, closed_loop_msgs_s * UPPER_BOUND_FACTOR, steps)

    @property
    def done(self) -> bool:
        return len(self.history) >= self.steps

    def next_rate(self) -> float:
        return (self.lower_msgs_s + self.upper_msgs_s) / 2

    def record(self, outcome: ProbeOutcome) -> None:
        self.history.append(outcome)
        if outcome.passes(self.slo_p99_ms):
            self.lower_msgs_s = outcome.rate_msgs_s
            if self.best is None or outcome.rate_msgs_s > self.best.rate_msgs_s:
                self.best = outcome
        else:
            self.upper_msgs_s = outcome.rate_msgs_s
