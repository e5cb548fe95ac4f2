"""What every generator worker process does, whatever its client stack or mode.

A worker reads one ``WorkerPlan`` JSON line on stdin, opens its connections and prints
``{"event": "connected", ...}``; waits for ``GO <start_ns>`` on stdin (a CLOCK_MONOTONIC time
shared by all workers), lets its stack drive warm-up and measurement, drains, and prints
``{"event": "report", ...}``. On failure it prints ``{"event": "failed", "message": ...}`` and
exits 3. That sequence is ``run_worker``, written once here; each worker module (the echo
stacks ``bench.load.worker`` on picows and ``bench.load.library_worker`` on the libraries' own
clients, and the modes' workers) supplies only its ``WorkerHooks``: how to connect or what to
open, how to drive the load, and where it differs, how to finish, close and report.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from time import monotonic_ns
from typing import Any, Generic, Protocol, TypeVar

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
# The older form of a drive (``run_worker(plan, connect, drive)``): sends from the start time
# until the window's end, given the connections, plan, tally and start time.
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


@dataclass
class WorkerRun(Generic[C]):
    """One worker's run as ``run_worker`` goes through it: the hooks read it and fill it in."""

    plan: WorkerPlan
    tally: Tally
    # Every connection here is closed at the end, whatever happened (``WorkerHooks.close``).
    connections: list[C] = field(default_factory=list)
    connect_times: LatencyRecorder = field(default_factory=LatencyRecorder)
    connect_s: float = 0.0
    # Attempts that gave no connection (a connect storm counts them; ``open_connections``
    # fails the worker instead).
    connect_failures: int = 0
    start_ns: int = 0  # the coordinator's start time, once its signal has come
    wire_before: WireSnapshot | None = None  # taken once "connected" is out


Hook = Callable[[WorkerRun[C]], Awaitable[None]]
# Opens what the worker holds before "connected"; returns how many connections that says.
Open = Callable[[WorkerRun[C]], Awaitable[int]]
# Drains what is still in flight after the drive; returns the report's wire counts.
Finish = Callable[[WorkerRun[C]], Awaitable[dict[str, Any]]]
Report = Callable[[WorkerRun[C], WorkerReport], WorkerReport]


async def open_window(run: WorkerRun[Any]) -> None:
    """The plan's measurement window (a time-sliced run's, or warm-up then duration) on the
    tally and every connection; then wait for the start time."""
    plan, start_ns = run.plan, run.start_ns
    schedule = plan.slices()
    if schedule is not None:
        window_start, window_end = schedule.window(start_ns)
    else:
        window_start = start_ns + int(plan.warmup_s * NS_PER_S)
        window_end = window_start + int(plan.duration_s * NS_PER_S)
    run.tally.window_start_ns, run.tally.window_end_ns = window_start, window_end
    for connection in run.connections:
        connection.start_window(window_start, window_end)
    await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / NS_PER_S))


async def open_nothing(run: WorkerRun[Any]) -> int:
    """For modes whose connections are what they measure: ``drive`` opens them, after the
    start signal, into ``run.connections``."""
    return 0


async def no_window(run: WorkerRun[Any]) -> None:
    """For modes that keep no echo window and pace themselves from the start signal on."""


async def count_nothing(run: WorkerRun[Any]) -> dict[str, Any]:
    """For modes with nothing in flight to drain and no wire counts."""
    return {}


async def drain_and_count(run: WorkerRun[Any]) -> dict[str, Any]:
    """Drain the echoes, then what went on the wire since "connected" (before close frames)."""
    await drain(run.connections, run.plan.drain_timeout_s)
    assert run.wire_before is not None
    return WireSnapshot.take(run.connections).since(run.wire_before)


async def close_connections(run: WorkerRun[Any]) -> None:
    unclosed = await close_all(run.connections)
    if unclosed:
        run.tally.note_error(f"{unclosed} connections did not close within {CLOSE_TIMEOUT_S} s")


def keep_report(run: WorkerRun[Any], report: WorkerReport) -> WorkerReport:
    return report


@dataclass(frozen=True)
class WorkerHooks(Generic[C]):
    """What one kind of worker does differently; ``run_worker`` does the rest, in order.

    ``open`` (default: ``open_connections`` with ``connect``) runs before "connected";
    ``start`` (default: ``open_window``) once the start signal has come; ``drive`` from then to
    the window's end; ``finish`` (default: ``drain_and_count``) after it; ``close`` (default:
    ``close_connections``) always, last; ``report`` turns the echo report built from the run
    into the mode's own (default: as built). Give ``connect`` or ``open``, not both.
    """

    drive: Hook[C]
    connect: Connect[C] | None = None
    open: Open[C] | None = None
    start: Hook[C] = open_window
    finish: Finish[C] = drain_and_count
    close: Hook[C] = close_connections
    report: Report[C] = keep_report

    def __post_init__(self) -> None:
        if (self.connect is None) == (self.open is None):
            raise TypeError("worker hooks take a connect or an open, not both or neither")


async def run_worker(
    plan: WorkerPlan, hooks: WorkerHooks[C] | Connect[C], drive: Drive[C] | None = None
) -> WorkerReport:
    """The worker's whole sequence: open, "connected", the start signal, start, drive (with
    the recorders kept bounded), finish, close (always), report.

    ``run_worker(plan, connect, drive)``, with a ``Drive``, is the older form (modes outside
    this package use it): it is ``WorkerHooks(connect=connect, drive=...)``."""
    if not isinstance(hooks, WorkerHooks):
        assert drive is not None, "run_worker(plan, connect, drive) needs its drive"
        hooks = WorkerHooks(connect=hooks, drive=_run_drive(drive))
    run: WorkerRun[C] = WorkerRun(plan, Tally())
    wire_counts: dict[str, Any] = {}
    try:
        announced = await (hooks.open or _opener(hooks.connect))(run)
        emit("connected", connections=announced, connect_s=run.connect_s)
        # Counted from here (handshakes done) to the end of the drain (before close frames).
        run.wire_before = WireSnapshot.take(run.connections)
        run.start_ns = await read_start_signal()
        await hooks.start(run)
        guard = asyncio.ensure_future(keep_recorders_bounded(run.tally, run.tally.window_end_ns))
        try:
            await hooks.drive(run)
        finally:
            guard.cancel()
        wire_counts = await hooks.finish(run)
    finally:
        await hooks.close(run)
    return hooks.report(run, build_report(run, wire_counts))


def _opener(connect: Connect[C] | None) -> Open[C]:
    assert connect is not None

    async def open_all(run: WorkerRun[C]) -> int:
        opened = await open_connections(run.plan, run.tally, connect)
        run.connections, run.connect_times, run.connect_s = opened
        return len(run.connections)

    return open_all


def _run_drive(drive: Drive[C]) -> Hook[C]:
    async def drive_run(run: WorkerRun[C]) -> None:
        await drive(run.connections, run.plan, run.tally, run.start_ns)

    return drive_run


def round_counts(marks: Sequence[int], received: int) -> list[int]:
    """Echoes counted in each measured round of a time-sliced run, from the running totals at
    each round's start (``Tally.round_marks``) and the final total; none without slices."""
    if not marks:
        return []
    ends = [*marks[1:], received]
    return [end - start for start, end in zip(marks, ends, strict=True)]


def report_negotiated(run: WorkerRun[Any], report: WorkerReport) -> WorkerReport:
    """The report, with what its connections (``EchoConnection``s) negotiated: extensions
    and TLS."""
    connections = run.connections
    tls_version, cipher = connections[0].tls() if connections else ("", "")
    return replace(
        report,
        negotiated_extensions=sorted({c.agreement for c in connections}),
        tls_version=tls_version,
        tls_cipher=cipher,
    )


def build_report(run: WorkerRun[Any], wire_counts: dict[str, Any]) -> WorkerReport:
    """The echo report: counts over ``run.connections`` and the tally's recorders."""
    plan, connections, tally = run.plan, run.connections, run.tally
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
        connect_hist=hist.encode(run.connect_times.histogram),
        connect_s=run.connect_s,
        clamped=tally.latency.clamped,
        error_samples=tally.error_samples,
        round_received=round_counts(tally.round_marks, received),
        connect_failures=run.connect_failures,
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
