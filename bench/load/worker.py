"""The fast generator worker: ``python -m bench.load.worker`` (protocol in ``bench.load.engine``).

Its connections are picows listeners speaking raw WebSocket or Engine.IO/Socket.IO themselves
(``bench.load.client``); it always runs on uvloop: the generator must be the fastest stack the
machine has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from time import monotonic_ns

from bench.load.alarm import Alarm
from bench.load.client import EchoConnection, Tally, connect
from bench.load.connect_worker import open_session
from bench.load.deflate_client import EXTENSIONS_HEADER, DeflateEchoConnection
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerHooks,
    WorkerRun,
    report_negotiated,
    run_worker,
    worker_main,
)
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.polling_worker import polling_url
from bench.load.schedule import NS_PER_S, constant_rate
from bench.protocol.deflate import OFFER
from bench.protocol.exchange import Exchange
from bench.spec import POLLING_UPGRADE
from bench.tls import client_context

# Open loop: the shortest time between two wake-ups of the sender (at most 20,000 a second).
MIN_WAKE_NS = 50_000


async def run_closed_loop(connections: list[EchoConnection], inflight: int, end_ns: int) -> None:
    # Each echo triggers the next send (EchoConnection.on_ws_frame); sends stop at end_ns.
    for connection in connections:
        for _ in range(inflight):
            connection.send(monotonic_ns())
    await asyncio.sleep(max(0.0, (end_ns - monotonic_ns()) / NS_PER_S))


async def run_closed_slices(
    connections: list[EchoConnection],
    inflight: int,
    intervals: list[tuple[int, int]],
    tally: Tally | None = None,
    first_measured: int = 0,
) -> None:
    """Closed loop in this worker's slices only (``bench.load.slices``): at each slice's start
    every connection is topped up to ``inflight`` messages, and sends stop at its end.

    At the start of each measured slice the echoes counted so far are noted in
    ``tally.round_marks`` (per-round counts, ``bench.load.engine.round_counts``): an echo is
    counted in the round in which it arrived, so the few still in flight when a slice ends
    (at most connections x inflight) fall into the next one; their sum is exact."""
    alarm = Alarm()
    try:
        for index, (start_ns, end_ns) in enumerate(intervals):
            await alarm.sleep_until(start_ns)
            if tally is not None and index >= first_measured:
                tally.round_marks.append(sum(c.received for c in connections))
            for connection in connections:
                connection.window_end_ns = end_ns
                for _ in range(inflight - len(connection.outstanding)):
                    connection.send(monotonic_ns())
            await alarm.sleep_until(end_ns)
    finally:
        alarm.close()


async def run_open_loop(
    connections: list[EchoConnection], plan: WorkerPlan, tally: Tally, start_ns: int
) -> None:
    whole = constant_rate(start_ns, plan.rate_msgs_s, plan.warmup_s + plan.duration_s)
    schedule = whole.share(plan.worker_index, plan.worker_count)
    sends = [connection.send for connection in connections]
    count = len(sends)
    lag = tally.send_lag.append
    window_start = tally.window_start_ns
    intended_ns = schedule.intended_ns
    index = 0
    total = schedule.count
    alarm = Alarm()
    try:
        while index < total:
            due = schedule.due_count(monotonic_ns())
            while index < due:
                intended = intended_ns(index)
                sends[index % count](intended)
                if intended >= window_start:
                    lag(monotonic_ns() - intended)
                index += 1
            if index < total:
                # Wake at the next intended time, but at most once per MIN_WAKE_NS: at high
                # rates several messages leave per wake-up, each stamped with its own time.
                await alarm.sleep_until(max(intended_ns(index), monotonic_ns() + MIN_WAKE_NS))
    finally:
        alarm.close()


async def drive(run: WorkerRun[EchoConnection]) -> None:
    connections, plan, tally, start_ns = run.connections, run.plan, run.tally, run.start_ns
    schedule = plan.slices()
    if plan.mode == "closed" and schedule is not None:
        await run_closed_slices(
            connections, plan.inflight, schedule.intervals(start_ns), tally,
            schedule.warmup_rounds,
        )  # fmt: skip
    elif plan.mode == "closed":
        await run_closed_loop(connections, plan.inflight, tally.window_end_ns)
    else:
        await run_open_loop(connections, plan, tally, start_ns)


async def run(plan: WorkerPlan) -> WorkerReport:
    exchange = Exchange(plan.protocol, plan.payload_kind, plan.payload_bytes, ack=plan.ack)
    max_frame_bytes = plan.payload_bytes + FRAME_SLACK_BYTES
    closed_loop = plan.mode == "closed"
    # The shipped tier's browser-like client: a deflate offer, and Socket.IO's default path.
    listener: type[EchoConnection] = DeflateEchoConnection if plan.deflate else EchoConnection
    headers = {EXTENSIONS_HEADER: OFFER} if plan.deflate else None
    context = None
    if plan.url.startswith("wss://"):
        context = client_context(Path(plan.tls_ca) if plan.tls_ca else None, plan.tls_insecure)

    async def open_one(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> EchoConnection:
        url, upgrade = plan.url, False
        if plan.transport == POLLING_UPGRADE:
            # (Over TLS the harness refuses this path: its HTTP/1.1 client has no TLS.)
            sid, _ = await open_session(polling_url(plan.url), local_addr, plan.connect_timeout_s)
            url, upgrade = f"{plan.url}&sid={sid}", True
        return await connect(
            url, exchange, tally, closed_loop, plan.connect_timeout_s, max_frame_bytes,
            local_addr, upgrade=upgrade, listener_class=listener, extra_headers=headers,
            ssl_context=context,
        )  # fmt: skip

    hooks = WorkerHooks(connect=open_one, drive=drive, report=report_negotiated)
    return await run_worker(plan, hooks)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
