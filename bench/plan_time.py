"""How long a list of cells should take on the 2-core machine: a model, never a measurement.

Printed before a run starts, used to refuse runs planned beyond an hour without
``--allow-long-run``, and held against the default suite's 10-minute budget by a test. Each
constant was measured on the 2-core machine (docs/measurements.md); on a fresh clone
(2026-11-22) the default suite took 9 min 21 s (561 s) where this model said 561 s.
"""

from __future__ import annotations

from bench import modes
from bench.load.slices import SliceSchedule
from bench.spec import RunSpec, run_groups, uses_calibration

# A time-sliced group of four servers took its span plus about 3 s (start, probe, spawn,
# stop; wsbench run --scenario payload), and each calibration 5 s.
SETUP_S = 3.0
CALIBRATION_S = 6.0
# Connect storms, fan-out, memory and reconnect cells: about this much beyond their own time
# (their modes' time models, bench.modes, add it).
CONNECT_SETUP_S = 1.5
# Several server processes (--server-workers): each one past the first, with the harness's
# redis-server, added about this much to a cell (make bench, 2026-12-02: echo 3.2 s a cell at
# two processes against 2.2 s at one; 1,000-receiver fan-out 5.7 s against 4.2 s planned).
SCALE_OUT_PROCESS_S = 1.0


def planned_run_s(cells: list[RunSpec]) -> float:
    """Seconds the cells should take, calibrations included (pure)."""
    calibrated = {(c.payload_bytes, c.payload_kind) for c in cells if uses_calibration(c)}
    total = CALIBRATION_S * len(calibrated)
    for group in run_groups(cells):
        first = group[0]
        total += SCALE_OUT_PROCESS_S * (first.server_workers - 1)
        own = modes.get(first.mode).time_s
        if own is not None:
            total += own(first, len(group))
        elif len(group) > 1:
            schedule = SliceSchedule.plan(
                0, len(group), first.slice_s, first.warmup_s, first.duration_s
            )
            total += schedule.span_s + SETUP_S
        else:
            total += first.warmup_s + first.duration_s + SETUP_S
    return total


def format_duration(seconds: float) -> str:
    """``'9 min 41 s'``, ``'2 h 5 min'``, ``'12 s'``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
