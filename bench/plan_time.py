"""How long a list of cells should take on the 2-core machine: a model, never a measurement.

Printed before a run starts, used to refuse runs planned beyond an hour without
``--allow-long-run``, and held against the default suite's 10-minute budget by a test. Each
constant was measured on the 2-core machine (docs/measurements.md); on a fresh clone
(2026-11-22) the default suite took 9 min 21 s (561 s) where this model said 561 s.
"""

from __future__ import annotations

from bench.load.slices import SliceSchedule
from bench.spec import RunSpec, run_groups, uses_calibration

# A time-sliced group of four servers took its span plus about 3 s (start, probe, spawn,
# stop; wsbench run --scenario payload), and each calibration 5 s.
SETUP_S = 3.0
CALIBRATION_S = 6.0
# Connect storms (wsbench run --scenario connect): a cell took its storm plus about 1 s, and
# the slowest server set up about 700 connections a second at full speed.
CONNECT_SETUP_S = 1.5
FULL_SPEED_CONNS_S = 700.0
# Fan-out and memory cells open their connections first, at about these many a second (the
# slowest server, Socket.IO; memory: 5,000 in 12-15 s in make bench on 2026-11-22).
OPEN_CONNS_S = 700.0
MEMORY_CONNS_S = 400.0
# Reconnect cells: the library clients connect at about this many a second; the restart.
LIBRARY_CONNS_S = 300.0
RESTART_S = 1.0
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
        if first.mode == "connect":
            rate = first.rate_conns_s or FULL_SPEED_CONNS_S
            total += first.connections / rate + CONNECT_SETUP_S
        elif first.mode == "fanout":
            total += first.connections / OPEN_CONNS_S + first.warmup_s + first.duration_s
            total += CONNECT_SETUP_S
        elif first.mode == "reconnect":
            total += first.connections / LIBRARY_CONNS_S + first.warmup_s + first.duration_s
            total += CONNECT_SETUP_S + RESTART_S
        elif first.mode == "memory":
            held_s = len(first.memory_steps) * (first.warmup_s + first.duration_s)
            total += first.connections / MEMORY_CONNS_S + held_s + CONNECT_SETUP_S
        elif first.mode == "capacity":
            # The closed-loop bound, then one open-loop probe per bisection step.
            total += (1 + first.capacity_steps) * (first.warmup_s + first.duration_s + SETUP_S)
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
