"""What a broker fault did to a scale-out fan-out, message by message (pure).

The harness killed the broker (SIGKILL) and restarted it on the same port while messages were
published on a fixed schedule; each message's intended publish time and, per server process,
how many of that process's receivers got it, say what was lost and when each process's
receivers got broadcasts again. A process "recovered" at the first message published after the
restart that reached all of its receivers; one that did not within the run is named, with how
long after the restart the run went on (its relay may retry later than that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class BrokerFault:
    lost_broadcasts: int  # measured messages that some receiver never got
    recovery_s: float  # restart to the last process's recovery; NaN when one never recovered
    per_worker_s: dict[int, float]  # per process, restart to its recovery (NaN: never)
    note: str  # why recovery_s is empty, naming the processes; "" otherwise


def analyse(
    intended_ns: list[int],
    delivered: dict[int, list[int]],
    receivers: dict[int, int],
    restarted_ns: int,
) -> BrokerFault:
    """``intended_ns``: the measured messages' intended publish times; ``delivered``: per
    process, per message, how many of its receivers got it; ``receivers``: per process, how
    many receivers it had; ``restarted_ns``: when the broker answered again."""
    lost = sum(
        1
        for index in range(len(intended_ns))
        if any(row[index] < receivers.get(worker, 0) for worker, row in delivered.items())
    )
    after = [index for index, t in enumerate(intended_ns) if t >= restarted_ns]
    per_worker: dict[int, float] = {}
    for worker, row in sorted(delivered.items()):
        complete = [i for i in after if row[i] >= receivers.get(worker, 0) > 0]
        per_worker[worker] = (
            (intended_ns[complete[0]] - restarted_ns) / NS_PER_S if complete else math.nan
        )
    never = [worker for worker, seconds in per_worker.items() if math.isnan(seconds)]
    span_s = (intended_ns[after[-1]] - restarted_ns) / NS_PER_S if after else 0.0
    if not after:
        note = "no message was published after the broker's restart"
    elif never:
        note = "; ".join(
            f"server worker {worker} did not recover within the run (none of the "
            f"{len(after):,} messages published in the {span_s:.1f} s after the broker's "
            f"restart reached all its {receivers.get(worker, 0):,} receivers)"
            for worker in never
        )
    else:
        note = ""
    recovery = max(per_worker.values()) if per_worker and not never and after else math.nan
    return BrokerFault(lost, recovery, per_worker, note)
