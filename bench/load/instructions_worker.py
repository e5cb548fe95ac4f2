"""The instructions mode's worker: ``python -m bench.load.instructions_worker``.

On the worker skeleton (bench.load.engine): it opens ``connections`` one at a time (its plan
says so), then after the start signal sends ``params["messages"]`` echoes on the first
connection, one in flight, each after the last one's reply, so that the server's work per
message is the same whatever its speed under callgrind; ``params["phases"]`` times over, each
followed by a ``{"event": "phase"}`` line and a wait for ``NEXT`` on stdin, so that the
harness can read the server's counters between phases with no connection opening or closing.
``duration_s`` bounds the sending (a message not echoed by then is missing).
"""

from __future__ import annotations

import asyncio
import sys
from time import monotonic_ns

from bench.load.client import EchoConnection, Tally, connect
from bench.load.engine import FRAME_SLACK_BYTES, WorkerFailed, emit, run_worker, worker_main
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.schedule import NS_PER_S
from bench.protocol.exchange import Exchange


async def send_one_at_a_time(connection: EchoConnection, messages: int, end_ns: int) -> None:
    for _ in range(messages):
        if monotonic_ns() >= end_ns:
            return
        connection.send(monotonic_ns())
        while connection.outstanding and not connection.disconnected:
            if monotonic_ns() >= end_ns:
                return
            await asyncio.sleep(0)


async def read_next(timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout_s)
    if line.strip() != "NEXT":
        raise WorkerFailed(f"expected NEXT from the coordinator, got {line!r:.60}")


async def run(plan: WorkerPlan) -> WorkerReport:
    messages = int(plan.params.get("messages", 0))
    if plan.worker_count != 1 or messages < 0:
        raise WorkerFailed("the instructions worker sends its messages from one process")
    exchange = Exchange(plan.protocol, plan.payload_kind, plan.payload_bytes)

    async def open_one(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> EchoConnection:
        return await connect(
            plan.url, exchange, tally, False, plan.connect_timeout_s,
            plan.payload_bytes + FRAME_SLACK_BYTES, local_addr,
        )  # fmt: skip

    phases = int(plan.params.get("phases", 1))

    async def drive(
        connections: list[EchoConnection], plan: WorkerPlan, tally: Tally, start_ns: int
    ) -> None:
        # The loop's timers may wake a millisecond early: the first message must be counted.
        while monotonic_ns() < tally.window_start_ns:
            await asyncio.sleep(0)
        for phase in range(phases):
            await send_one_at_a_time(connections[0], messages, tally.window_end_ns)
            if phases > 1:
                emit("phase", phase=phase, received=connections[0].received)
                await read_next(max(0.0, (tally.window_end_ns - monotonic_ns()) / NS_PER_S))

    return await run_worker(plan, open_one, drive)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
