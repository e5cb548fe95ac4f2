"""Reconnect storms: the backoff both client stacks share, and recovery times (pure).

python-socketio's client reconnects on its own with delays that double from
``reconnection_delay`` up to ``reconnection_delay_max``, each shifted by up to
``randomization_factor`` seconds either way. websockets' reconnecting ``connect`` takes its
delays from a generator (``reconnect_delays``); it is given exactly this sequence, so both
stacks wait alike and only the protocols and libraries differ.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """python-socketio's parameters (its defaults are 1 s, 5 s and 0.5 s)."""

    delay_s: float = 0.5
    delay_max_s: float = 5.0
    randomization_s: float = 0.5

    def delays(self, rng: random.Random | None = None) -> Generator[float]:
        """The delays before each attempt, as python-socketio's ``_handle_reconnect`` computes
        them (never below zero)."""
        draw = (rng or random.Random()).random
        current = self.delay_s
        while True:
            delay = min(current, self.delay_max_s)
            current *= 2
            yield max(0.0, delay + self.randomization_s * (2 * draw() - 1))

    def describe(self) -> str:
        return (
            f"{self.delay_s:g} s doubling to {self.delay_max_s:g} s, "
            f"±{self.randomization_s:g} s (python-socketio's algorithm, both stacks)"
        )


BACKOFF = Backoff()


@dataclass(frozen=True)
class Recovery:
    """Seconds from the server's kill until the given share of clients were exchanging
    messages again; NaN when that share never recovered within the run."""

    p50_s: float
    p99_s: float
    all_s: float
    recovered: int
    clients: int


def recovery(kill_ns: int, recovered_ns: list[int]) -> Recovery:
    """``recovered_ns``: per client, when its first message after the kill was echoed (-1:
    never). A share ``q`` has recovered once ``ceil(q * clients)`` clients have."""
    clients = len(recovered_ns)
    times = sorted((t - kill_ns) / 1e9 for t in recovered_ns if t >= 0)

    def by(share: float) -> float:
        needed = max(1, math.ceil(share * clients))
        return times[needed - 1] if needed <= len(times) else math.nan

    if clients == 0:
        return Recovery(math.nan, math.nan, math.nan, 0, 0)
    return Recovery(by(0.5), by(0.99), by(1.0), len(times), clients)
