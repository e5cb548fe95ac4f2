"""What every generator worker process does, whatever its client stack.

A worker reads one ``WorkerPlan`` JSON line on stdin, opens its connections and prints
``{"event": "connected", ...}``; waits for ``GO <start_ns>`` on stdin (a CLOCK_MONOTONIC time
shared by all workers), lets its stack drive warm-up and measurement, drains, and prints
``{"event": "report", ...}``. On failure it prints ``{"event": "failed", "message": ...}`` and
exits 3. The stacks (``bench.load.worker`` on picows, ``bench.load.library_worker`` on the
libraries' own clients) supply only how to connect and how to drive the load.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from time import monotonic_ns
from typing import Any, Protocol, TypeVar

import uvloop

from bench.limits import raise_open_files_limit
from bench.load.client import Tally
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S
from bench.metrics import histogram as hist
from bench.metrics import wire

# Flush recorders during a run only when this many samples are pending (about 64 MB): a flush
# stalls the loop for milliseconds, which would show up in the latencies it is recording.
FLUSH_THRESHOLD = 8_000_000
SAFETY_TICK_S = 1.0
CLOSE_TIMEOUT_S = 2.0
START_SIGNAL_TIMEOUT_S = 60.0
# Slack for frames: the largest payload plus Socket.IO's envelope.
FRAME_SLACK_BYTES = 1024


class WorkerFailed(Exception):
    pass


class Connection(Protocol):
    """The accounting every stack's connection keeps."""

    outstanding: dict[Any, int]
    sent: int
    received: int
    unexpected: int
    disconnected: bool

    next_seq: int

    def start_window(self, start_ns: int, end_ns: int) -> None: ...
    def window_outstanding(self) -> int: ...
    async def close(self, timeout_s: float) -> None: ...


C = TypeVar("C", bound=Connection)
Connect = Callable[[WorkerPlan, Tally, "tuple[str, int] | None"], Awaitable[C]]
# Sends from the start time until the window's end (closed or open loop, as the plan says).
Drive = Callable[[list[C], WorkerPlan, Tally, int], Awaitable[None]]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def open_connections(
    plan: WorkerPlan, tally: Tally, connect: Connect[C]
) -> tuple[list[C], LatencyRecorder, float]:
    """Open ``plan.connections`` with bounded concurrency, each within its timeout."""
    connect_times = LatencyRecorder()
    gate = asyncio.Semaphore(plan.connect_concurrency)
    sources = plan.source_addresses

    async def one(index: int) -> C:
        local_addr = (sources[index % len(sources)], 0) if sources else None
        async with gate:
            started = monotonic_ns()
            try:
                connection = await asyncio.wait_for(
                    connect(plan, tally, local_addr), plan.connect_timeout_s
                )
            except Exception as exc:  # refused, timed out, handshake or namespace rejected
                raise WorkerFailed(f"connection {index} to {plan.url} failed: {exc!r}") from exc
        connect_times.append(monotonic_ns() - started)
        return connection

    started = monotonic_ns()
    tasks = [asyncio.ensure_future(one(i)) for i in range(plan.connections)]
    try:
        connections = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        opened = [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
        await close_all(opened)
        raise
    connect_times.flush()
    return list(connections), connect_times, (monotonic_ns() - started) / NS_PER_S


async def close_all(connections: Sequence[Connection]) -> int:
    """Close concurrently, each within ``CLOSE_TIMEOUT_S``; returns how many failed to."""

    async def one(connection: Connection) -> None:
        await asyncio.wait_for(connection.close(CLOSE_TIMEOUT_S), CLOSE_TIMEOUT_S + 1)

    outcomes = await asyncio.gather(*(one(c) for c in connections), return_exceptions=True)
    return sum(isinstance(outcome, BaseException) for outcome in outcomes)


async def read_start_signal(timeout_s: float = START_SIGNAL_TIMEOUT_S) -> int:
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


async def drain(connections: Sequence[Connection], timeout_s: float) -> None:
    """Wait for echoes still in flight, until none is left or ``timeout_s`` has passed."""
    deadline = monotonic_ns() + int(timeout_s * NS_PER_S)
    while monotonic_ns() < deadline:
        if all(not c.outstanding or c.disconnected for c in connections):
            return
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class WireSnapshot:
    """What the connections had put on the wire at one moment (see ``bench.metrics.wire``)."""

    messages: int
    bytes_up: int | None
    bytes_down: int | None
    frames_up: int | None
    frames_down: int | None
    http_requests: int | None

    @classmethod
    def take(cls, connections: Sequence[Connection]) -> WireSnapshot:
        # Stacks that count frames and expose their sockets define these; others do not.
        sockets = [s for c in connections for s in getattr(c, "tcp_sockets", lambda: [None])()]
        counted = wire.total(sockets) if connections else None
        ups = [getattr(c, "frames_sent", None) for c in connections]
        downs = [getattr(c, "frames_received", None) for c in connections]
        return cls(
            messages=sum(c.next_seq for c in connections),
            bytes_up=counted.up if counted else None,
            bytes_down=counted.down if counted else None,
            frames_up=_sum_all(ups),
            frames_down=_sum_all(downs),
            http_requests=_sum_all([getattr(c, "http_requests", None) for c in connections]),
        )

    def since(self, before: WireSnapshot) -> dict[str, Any]:
        def delta(after: int | None, earlier: int | None) -> int | None:
            return None if after is None or earlier is None else after - earlier

        return {
            "wire_messages": self.messages - before.messages,
            "wire_bytes_up": delta(self.bytes_up, before.bytes_up),
            "wire_bytes_down": delta(self.bytes_down, before.bytes_down),
            "wire_frames_up": delta(self.frames_up, before.frames_up),
            "wire_frames_down": delta(self.frames_down, before.frames_down),
            "http_requests": delta(self.http_requests, before.http_requests),
        }


def _sum_all(values: list[int | None]) -> int | None:
    """The sum, or None when any value is missing (a partial count would mislead)."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


async def run_worker(plan: WorkerPlan, connect: Connect[C], drive: Drive[C]) -> WorkerReport:
    tally = Tally()
    connections, connect_times, connect_s = await open_connections(plan, tally, connect)
    wire_counts: dict[str, Any] = {}
    try:
        emit("connected", connections=len(connections), connect_s=connect_s)
        # Counted from here (handshakes done) to the end of the drain (before close frames).
        wire_before = WireSnapshot.take(connections)
        start_ns = await read_start_signal()
        schedule = plan.slices()
        if schedule is not None:
            window_start, window_end = schedule.window(start_ns)
        else:
            window_start = start_ns + int(plan.warmup_s * NS_PER_S)
            window_end = window_start + int(plan.duration_s * NS_PER_S)
        tally.window_start_ns, tally.window_end_ns = window_start, window_end
        for connection in connections:
            connection.start_window(window_start, window_end)
        await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / NS_PER_S))
        guard = asyncio.ensure_future(keep_recorders_bounded(tally, window_end))
        try:
            await drive(connections, plan, tally, start_ns)
        finally:
            guard.cancel()
        await drain(connections, plan.drain_timeout_s)
        wire_counts = WireSnapshot.take(connections).since(wire_before)
    finally:
        unclosed = await close_all(connections)
    if unclosed:
        tally.note_error(f"{unclosed} connections did not close within {CLOSE_TIMEOUT_S} s")
    return build_report(plan, connections, tally, connect_times, connect_s, wire_counts)


def round_counts(marks: Sequence[int], received: int) -> list[int]:
    """Echoes counted in each measured round of a time-sliced run, from the running totals at
    each round's start (``Tally.round_marks``) and the final total; none without slices."""
    if not marks:
        return []
    ends = [*marks[1:], received]
    return [end - start for start, end in zip(marks, ends, strict=True)]


def build_report(
    plan: WorkerPlan,
    connections: Sequence[Connection],
    tally: Tally,
    connect_times: LatencyRecorder,
    connect_s: float,
    wire_counts: dict[str, Any],
) -> WorkerReport:
    tally.latency.flush()
    tally.send_lag.flush()
    missing = sum(c.window_outstanding() for c in connections)
    warmup_missing = sum(len(c.outstanding) for c in connections) - missing
    if warmup_missing:
        tally.note_error(f"{warmup_missing} echoes of warm-up messages never came")
    received = sum(c.received for c in connections)
    return WorkerReport(
        worker_index=plan.worker_index,
        connections=len(connections),
        sent=sum(c.sent for c in connections),
        received=received,
        missing=missing,
        unexpected=sum(c.unexpected for c in connections) + warmup_missing,
        disconnects=sum(c.disconnected for c in connections),
        latency_hist=hist.encode(tally.latency.histogram),
        send_lag_hist=hist.encode(tally.send_lag.histogram),
        connect_hist=hist.encode(connect_times.histogram),
        connect_s=connect_s,
        clamped=tally.latency.clamped,
        error_samples=tally.error_samples,
        round_received=round_counts(tally.round_marks, received),
        **wire_counts,
    )


def worker_main(run: Callable[[WorkerPlan], Coroutine[Any, Any, WorkerReport]]) -> int:
    """A worker process's ``main``: plan in, JSON events out, exit 0 or 3."""
    raise_open_files_limit()
    # No cyclic garbage collection in the generator: a full collection over thousands of
    # connections' objects stalls its loop for tens of milliseconds (24 ms measured during a
    # connect storm), which would show as the server's latency. A worker lives for one bounded
    # run and frees its acyclic garbage by reference counting meanwhile.
    gc.disable()
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
