"""Keep the pinned CPUs from halting while a suite runs: ``python -m bench.keepawake PARENT``.

On a virtual machine an idle vCPU halts, and a closed loop between two CPUs wakes the other one
for every message; each wake waits for the host to run that vCPU again, which the guest books as
steal and which moved every figure here by 2x from one minute to the next (docs/measurements.md,
"Keeping the pinned CPUs awake"). One busy loop per CPU at ``SCHED_IDLE`` priority runs only
when nothing else is runnable, so the vCPU never halts, and yields at once to any real work.
Written by hand: it is three system calls, which no library wraps for this.

The loop ends when the harness that started it is gone (its parent changes) or after
``MAX_LIFETIME_S``, whichever comes first; the harness also stops it with the rest.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from bench.processes import python_argv, start_process

MAX_LIFETIME_S = 6 * 3600.0
# Iterations between checks of the parent and the clock: about a millisecond of work.
CHECK_EVERY = 20_000


def spin(parent_pid: int, lifetime_s: float = MAX_LIFETIME_S) -> None:
    """Busy-loop at idle priority until ``parent_pid`` is no longer our parent."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    end = time.monotonic() + lifetime_s
    while os.getppid() == parent_pid and time.monotonic() < end:
        for _ in range(CHECK_EVERY):
            pass


async def start(cpus: frozenset[int]) -> list[asyncio.subprocess.Process]:
    """One idle-priority loop pinned to each CPU (none for an empty set; tracked: ``stop_all``
    stops them)."""
    argv = python_argv("bench.keepawake", str(os.getpid()))
    return [
        await start_process(argv, cpus=frozenset({cpu}), stdout=asyncio.subprocess.DEVNULL)
        for cpu in sorted(cpus)
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.keepawake PARENT_PID", file=sys.stderr)
        return 2
    spin(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
