"""Closed loop: every connection keeps ``inflight`` messages in flight; each echo triggers the
next send, so the rate is what the server sustains (``bench.load.worker``)."""

from __future__ import annotations

from bench.modes import Mode

MODE = Mode(
    name="closed",
    help="closed loop",
    closed_loop=True,
    calibrated=True,
    sliceable=True,
    scale_out=True,
    sharded=True,
)
