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
from bench.load.deflate_client import EXTENSIONS_HEADER, DeflateEchoConnection
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerFailed,
    WorkerHooks,
    WorkerRun,
    count_nothing,
    open_connections,
    open_nothing,
    run_worker,
    worker_main,
)
from bench.load.plan import WorkerPlan, WorkerReport
from bench.protocol.deflate import OFFER
from bench.protocol.exchange import Exchange


async def run(plan: WorkerPlan) -> WorkerReport:
    steps = plan.memory_steps
    if plan.mode != "memory" or not steps or plan.worker_count != 1:
        raise WorkerFailed("the memory worker holds connections in steps, in one process")
    if list(steps) != sorted(steps):
        raise WorkerFailed("memory steps must not decrease")
    exchange = Exchange(plan.protocol, "text", plan.payload_bytes)
    reached: list[list[int]] = []

    async def open_one(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> EchoConnection:
        # The shipped tier's connections offer permessage-deflate, as a browser's do: a server
        # that accepts it holds its compression state for every idle connection.
        return await connect(
            plan.url, exchange, tally, False, plan.connect_timeout_s,
            plan.payload_bytes + FRAME_SLACK_BYTES, local_addr,
            listener_class=DeflateEchoConnection if plan.deflate else EchoConnection,
            extra_headers={EXTENSIONS_HEADER: OFFER} if plan.deflate else None,
        )  # fmt: skip

    async def hold_in_steps(run: WorkerRun[EchoConnection]) -> None:
        held = run.connections  # opened into the run's list, so that all are closed
        for target in steps:
            more = target - len(held)
            if more > 0:
                opened, times, seconds = await open_connections(
                    replace(run.plan, connections=more), run.tally, open_one
                )
                held.extend(opened)
                run.connect_times.histogram.add(times.histogram)
                run.connect_s += seconds
            reached.append([target, monotonic_ns()])
            await asyncio.sleep(plan.warmup_s + plan.duration_s)

    def with_steps(run: WorkerRun[EchoConnection], report: WorkerReport) -> WorkerReport:
        agreements = sorted({c.agreement for c in run.connections})
        return replace(report, memory_steps_ns=reached, negotiated_extensions=agreements)

    # Nothing opens before "connected": the connections are the measurement, opened in steps
    # after the start signal. No messages: nothing to drain, no wire counts.
    hooks = WorkerHooks(
        open=open_nothing, drive=hold_in_steps, finish=count_nothing, report=with_steps
    )
    return await run_worker(plan, hooks)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
