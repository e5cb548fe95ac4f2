"""Open loop: messages leave on a fixed schedule of ``rate_msgs_s`` whatever the server does,
and latency runs from each message's intended send time (coordinated omission corrected)."""

from __future__ import annotations

from bench.modes import RATE, Mode

MODE = Mode(
    name="open",
    help="open loop (--rate msgs/s offered)",
    options=(RATE,),
    calibrated=True,
    scale_out=True,
    sharded=True,
    target_rate=lambda spec, result: spec.rate_msgs_s,
)
