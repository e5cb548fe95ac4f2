"""Time-sliced interleaving of several servers' closed-loop load (pure: no sockets, no clock).

On a shared machine the CPU's speed drifts by 20-40% over seconds (measured here: a pure
Python loop pinned to one core ran 45 to 70 iterations a second within half a minute), so two
servers measured in separate runs, even back to back, are compared under different machines.
Running them in one run, each loaded in turn for short slices (A B C D A B C D ...), puts both
sides of every ratio under the same conditions; each slot still gets ``duration_s`` of
measured load in all, and its throughput is its messages over that active time.

Each round gives every slot one slice, in an order shuffled afresh each round from ``seed``
(every worker computes the same orders from the same seed): a fixed A B C D order would let
any periodic disturbance on the machine whose period fits the round's length hit the same slot
every time. The first ``warmup_rounds`` rounds warm every server up; the next
``measured_rounds`` are measured.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class SliceSchedule:
    slot: int
    slots: int
    slice_ns: int
    warmup_rounds: int
    measured_rounds: int
    seed: int = 0

    @classmethod
    def plan(
        cls,
        slot: int,
        slots: int,
        slice_s: float,
        warmup_s: float,
        duration_s: float,
        seed: int = 0,
    ) -> SliceSchedule:
        """Slices close to ``slice_s``, stretched so that the measured ones add up to exactly
        ``duration_s`` per slot (and the warm-up ones to about ``warmup_s``)."""
        if slots < 1 or not 0 <= slot < slots:
            raise ValueError(f"slot {slot} of {slots}")
        if slice_s <= 0 or duration_s <= 0 or warmup_s < 0:
            raise ValueError("slice_s and duration_s must be positive, warmup_s not negative")
        measured_rounds = max(1, round(duration_s / slice_s))
        slice_ns = round(duration_s * NS_PER_S / measured_rounds)
        warmup_rounds = math.ceil(warmup_s * NS_PER_S / slice_ns) if warmup_s > 0 else 0
        return cls(slot, slots, slice_ns, warmup_rounds, measured_rounds, seed)

    @property
    def rounds(self) -> int:
        return self.warmup_rounds + self.measured_rounds

    @property
    def span_s(self) -> float:
        """Wall time of the whole run, every slot's slices included."""
        return self.rounds * self.slots * self.slice_ns / NS_PER_S

    @property
    def measured_s(self) -> float:
        """This slot's measured, active time."""
        return self.measured_rounds * self.slice_ns / NS_PER_S

    def intervals(self, origin_ns: int) -> list[tuple[int, int]]:
        """This slot's active slices, warm-up ones first, as ``(start_ns, end_ns)``."""
        round_ns = self.slots * self.slice_ns
        starts = [
            origin_ns + r * round_ns + self.position(r) * self.slice_ns for r in range(self.rounds)
        ]
        return [(start, start + self.slice_ns) for start in starts]

    def position(self, round_index: int) -> int:
        """Where this slot's slice falls in round ``round_index`` (0 to slots - 1)."""
        order = list(range(self.slots))
        random.Random(self.seed * 1_000_003 + round_index).shuffle(order)
        return order.index(self.slot)

    def window(self, origin_ns: int) -> tuple[int, int]:
        """From the start of this slot's first measured slice to the end of its last one."""
        measured = self.intervals(origin_ns)[self.warmup_rounds :]
        return measured[0][0], measured[-1][1]

    def active_fraction(self) -> float:
        """Share of ``window`` in which this slot is active (to turn CPU over the window into
        CPU while loaded)."""
        start, end = self.window(0)
        return self.measured_rounds * self.slice_ns / (end - start)
