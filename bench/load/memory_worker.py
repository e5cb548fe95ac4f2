"""Memory per connection: ``python -m bench.load.memory_worker``.

After the start signal the worker opens idle connections up to each of ``plan.memory_steps`` in
turn (Socket.IO: through the namespace connect, so the server holds a full session), then holds
them for ``warmup_s`` (the server settles) and ``duration_s`` (the harness samples its memory).
It reports when each step was reached; the harness turns its samples of the server's RSS and
USS in each step's sampling window into points and fits a line (``bench.analyze.stats``).
No messages are sent: the figure is the cost of a connection that is merely open.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from time import monotonic_ns

from bench.load.client import EchoConnection, Tally, connect
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerFailed,
    build_report,
    close_all,
    emit,
    open_connections,
    read_start_signal,
    worker_main,
)
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S
from bench.protocol.exchange import Exchange


async def run(plan: WorkerPlan) -> WorkerReport:
    steps = plan.memory_steps
    if plan.mode != "memory" or not steps or plan.worker_count != 1:
        raise WorkerFailed("the memory worker holds connections in steps, in one process")
    if list(steps) != sorted(steps):
        raise WorkerFailed("memory steps must not decrease")
    tally = Tally()
    exchange = Exchange(plan.protocol, "text", plan.payload_bytes)

    async def open_one(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> EchoConnection:
        return await connect(
            plan.url, exchange, tally, False, plan.connect_timeout_s,
            plan.payload_bytes + FRAME_SLACK_BYTES, local_addr,
        )  # fmt: skip

    emit("connected", connections=0, connect_s=0.0)
    start_ns = await read_start_signal()
    await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / NS_PER_S))
    held: list[EchoConnection] = []
    connect_times = LatencyRecorder()
    reached: list[list[int]] = []
    connect_s = 0.0
    try:
        for target in steps:
            more = target - len(held)
            if more > 0:
                opened, times, seconds = await open_connections(
                    replace(plan, connections=more), tally, open_one
                )
                held.extend(opened)
                connect_times.histogram.add(times.histogram)
                connect_s += seconds
            reached.append([target, monotonic_ns()])
            await asyncio.sleep(plan.warmup_s + plan.duration_s)
    finally:
        unclosed = await close_all(held)
    if unclosed:
        tally.note_error(f"{unclosed} connections did not close in time")
    report = build_report(plan, held, tally, connect_times, connect_s, {})
    return replace(report, memory_steps_ns=reached)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
