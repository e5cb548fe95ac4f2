"""A generator worker process: ``python -m bench.load.worker``.

Reads one ``WorkerPlan`` JSON line on stdin, opens its connections and prints
``{"event": "connected", ...}``; waits for ``GO <start_ns>`` on stdin (a CLOCK_MONOTONIC time
shared by all workers), runs warm-up and measurement, drains, and prints
``{"event": "report", ...}``. On failure it prints ``{"event": "failed", "message": ...}`` and
exits 3. It always runs on uvloop: the generator must be the fastest stack the machine has.
"""

from __future__ import annotations

import asyncio
import json
import sys
from time import monotonic_ns
from typing import Any

import uvloop

from bench.load.client import EchoConnection, Tally, connect
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S, constant_rate
from bench.metrics import histogram as hist
from bench.protocol.exchange import Exchange

# Flush recorders during a run only when this many samples are pending (about 64 MB): a flush
# stalls the loop for milliseconds, which would show up in the latencies it is recording.
FLUSH_THRESHOLD = 8_000_000
SAFETY_TICK_S = 1.0
# Slack for frames: the largest payload plus Socket.IO's envelope.
FRAME_SLACK_BYTES = 1024


class WorkerFailed(Exception):
    pass


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def open_connections(
    plan: WorkerPlan, exchange: Exchange, tally: Tally
) -> tuple[list[EchoConnection], LatencyRecorder, float]:
    connect_times = LatencyRecorder()
    gate = asyncio.Semaphore(plan.connect_concurrency)
    sources = plan.source_addresses

    async def one(index: int) -> EchoConnection:
        local_addr = (sources[index % len(sources)], 0) if sources else None
        async with gate:
            try:
                connection, took_ns = await connect(
                    plan.url,
                    exchange,
                    tally,
                    plan.mode == "closed",
                    plan.connect_timeout_s,
                    plan.payload_bytes + FRAME_SLACK_BYTES,
                    local_addr,
                )
            except (OSError, TimeoutError, ConnectionError) as exc:
                raise WorkerFailed(f"connection {index} to {plan.url} failed: {exc!r}") from exc
            except Exception as exc:  # picows' handshake errors and the like
                raise WorkerFailed(f"connection {index} to {plan.url} failed: {exc}") from exc
        connect_times.append(took_ns)
        return connection

    started = monotonic_ns()
    tasks = [asyncio.ensure_future(one(i)) for i in range(plan.connections)]
    try:
        connections = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
        raise
    connect_times.flush()
    return list(connections), connect_times, (monotonic_ns() - started) / NS_PER_S


async def read_start_signal(timeout_s: float) -> int:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout_s)
    word, _, value = line.strip().partition(" ")
    if word != "GO" or not value.isdigit():
        raise WorkerFailed(f"expected 'GO <start_ns>' from the coordinator, got {line!r:.60}")
    return int(value)


async def keep_recorders_bounded(tally: Tally, until_ns: int) -> None:
    while monotonic_ns() < until_ns:
        await asyncio.sleep(SAFETY_TICK_S)
        for recorder in (tally.latency, tally.send_lag):
            if len(recorder) > FLUSH_THRESHOLD:
                recorder.flush()


async def run_closed_loop(connections: list[EchoConnection], inflight: int, end_ns: int) -> None:
    # Each echo triggers the next send (EchoConnection.on_ws_frame); sends stop at end_ns.
    for connection in connections:
        for _ in range(inflight):
            connection.send(monotonic_ns())
    await asyncio.sleep(max(0.0, (end_ns - monotonic_ns()) / NS_PER_S))


async def run_open_loop(
    connections: list[EchoConnection], plan: WorkerPlan, tally: Tally, start_ns: int
) -> None:
    whole = constant_rate(start_ns, plan.rate_msgs_s, plan.warmup_s + plan.duration_s)
    schedule = whole.share(plan.worker_index, plan.worker_count)
    sends = [connection.send for connection in connections]
    count = len(sends)
    lag = tally.send_lag.append
    window_start = tally.window_start_ns
    sleep = asyncio.sleep
    intended_ns = schedule.intended_ns
    index = 0
    total = schedule.count
    while index < total:
        due = schedule.due_count(monotonic_ns())
        while index < due:
            intended = intended_ns(index)
            sends[index % count](intended)
            if intended >= window_start:
                lag(monotonic_ns() - intended)
            index += 1
        if index < total:
            await sleep(max(0.0, (intended_ns(index) - monotonic_ns()) / NS_PER_S))


async def drain(connections: list[EchoConnection], timeout_s: float) -> None:
    deadline = monotonic_ns() + int(timeout_s * NS_PER_S)
    while monotonic_ns() < deadline:
        if all(not c.outstanding or c.disconnected for c in connections):
            return
        await asyncio.sleep(0.01)


async def run(plan: WorkerPlan) -> WorkerReport:
    exchange = Exchange(plan.protocol, plan.payload_kind, plan.payload_bytes, ack=plan.ack)
    tally = Tally()
    connections, connect_times, connect_s = await open_connections(plan, exchange, tally)
    try:
        emit("connected", connections=len(connections), connect_s=connect_s)
        start_ns = await read_start_signal(timeout_s=60.0)
        window_start = start_ns + int(plan.warmup_s * NS_PER_S)
        window_end = window_start + int(plan.duration_s * NS_PER_S)
        tally.window_start_ns, tally.window_end_ns = window_start, window_end
        for connection in connections:
            connection.start_window(window_start, window_end)
        await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / NS_PER_S))
        guard = asyncio.ensure_future(keep_recorders_bounded(tally, window_end))
        try:
            if plan.mode == "closed":
                await run_closed_loop(connections, plan.inflight, window_end)
            else:
                await run_open_loop(connections, plan, tally, start_ns)
        finally:
            guard.cancel()
        await drain(connections, plan.drain_timeout_s)
    finally:
        for connection in connections:
            connection.close()
    tally.latency.flush()
    tally.send_lag.flush()
    missing = sum(c.window_outstanding() for c in connections)
    warmup_missing = sum(len(c.outstanding) for c in connections) - missing
    if warmup_missing:
        tally.note_error(f"{warmup_missing} echoes of warm-up messages never came")
    return WorkerReport(
        worker_index=plan.worker_index,
        connections=len(connections),
        sent=sum(c.sent for c in connections),
        received=sum(c.received for c in connections),
        missing=missing,
        unexpected=sum(c.unexpected for c in connections) + warmup_missing,
        disconnects=sum(c.disconnected for c in connections),
        latency_hist=hist.encode(tally.latency.histogram),
        send_lag_hist=hist.encode(tally.send_lag.histogram),
        connect_hist=hist.encode(connect_times.histogram),
        connect_s=connect_s,
        clamped=tally.latency.clamped,
        error_samples=tally.error_samples,
    )


def main() -> int:
    line = sys.stdin.readline()
    try:
        plan = WorkerPlan.from_json(line)
    except (ValueError, TypeError) as exc:
        emit("failed", message=f"bad worker plan: {exc}")
        return 3
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(run(plan))
    except WorkerFailed as exc:
        emit("failed", message=str(exc))
        return 3
    except TimeoutError:
        emit("failed", message="timed out waiting for the coordinator's start signal")
        return 3
    emit("report", **json.loads(report.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
