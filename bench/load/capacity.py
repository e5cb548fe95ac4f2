"""Capacity under an SLO: the highest open-loop rate a server sustains (pure bisection logic).

A rate passes when the run had no errors, its p99 latency (from intended send times) stayed
within the SLO, and the achieved rate came within ``ACHIEVED_TOLERANCE`` of the offered one.
The search bisects between 0 (passes by definition) and a little above the closed-loop
throughput, raising that bound when the server proves faster (see ``CapacitySearch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACHIEVED_TOLERANCE = 0.02
# The first upper bound: closed-loop throughput with some margin above it.
UPPER_BOUND_FACTOR = 1.1
# While the upper bound has never failed, passes at this share of it double it.
GROW_WHEN = 0.9
DEFAULT_STEPS = 7
# Probes per rate at most; a majority of them decides it.
VOTES = 3
MAJORITY = VOTES // 2 + 1


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
    """Bisection state: ``next_rate()`` to probe, ``record(outcome)`` what happened.

    Guards against a noisy machine, where one probe can pass or fail for reasons that have
    nothing to do with the rate (a collector pause, the host taking the core for a moment,
    or a moment when the shared core runs fast):
    - every rate is decided by a majority of up to ``VOTES`` probes (two agreeing of three),
      so neither one stall nor one lucky fast moment moves the bounds; on this machine a
      pinned core's speed drifts by tens of percent within seconds, and a search that
      believed single probes found rates 13-35% apart from one repeat to the next;
    - the first upper bound comes from the closed loop, which an open loop can beat (its
      messages queue and the server reads them in batches): while nothing has failed there
      and the passes come near it, it doubles.
    ``steps`` counts decisions, so a search makes at most ``VOTES * steps`` probes.
    """

    slo_p99_ms: float
    upper_msgs_s: float
    steps: int = DEFAULT_STEPS
    lower_msgs_s: float = 0.0
    best: ProbeOutcome | None = None
    history: list[ProbeOutcome] = field(default_factory=list)
    decisions: int = 0
    upper_failed: bool = False
    # Probes of the rate being decided.
    votes: list[ProbeOutcome] = field(default_factory=list)

    @classmethod
    def from_closed_loop(
        cls, slo_p99_ms: float, closed_loop_msgs_s: float, steps: int = DEFAULT_STEPS
    ) -> CapacitySearch:
        return cls(slo_p99_ms, closed_loop_msgs_s * UPPER_BOUND_FACTOR, steps)

    @property
    def done(self) -> bool:
        return self.decisions >= self.steps and not self.votes

    def next_rate(self) -> float:
        if self.votes:
            return self.votes[0].rate_msgs_s
        return (self.lower_msgs_s + self.upper_msgs_s) / 2

    def record(self, outcome: ProbeOutcome) -> None:
        self.history.append(outcome)
        self.votes.append(outcome)
        passed = [o for o in self.votes if o.passes(self.slo_p99_ms)]
        failed = len(self.votes) - len(passed)
        if len(passed) >= MAJORITY:
            self._passed(max(passed, key=lambda o: o.p99_us))
        elif failed >= MAJORITY:
            self._failed(outcome.rate_msgs_s)

    def _passed(self, outcome: ProbeOutcome) -> None:
        """The rate passed; ``outcome`` is its passing probe with the higher p99 (the row
        reports the less flattering of the two)."""
        self.votes = []
        self.decisions += 1
        rate = outcome.rate_msgs_s
        self.lower_msgs_s = max(self.lower_msgs_s, rate)
        if self.best is None or rate > self.best.rate_msgs_s:
            self.best = outcome
        if not self.upper_failed and self.lower_msgs_s >= GROW_WHEN * self.upper_msgs_s:
            self.upper_msgs_s *= 2

    def _failed(self, rate: float) -> None:
        self.votes = []
        self.decisions += 1
        self.upper_msgs_s = rate
        self.upper_failed = True
