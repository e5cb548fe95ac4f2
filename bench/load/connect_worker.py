"""Connection set-up storms: ``python -m bench.load.connect_worker``.

After the start signal the worker opens its share of the storm's connections, at a fixed rate
(each attempt at its intended time, however long earlier ones take, so a slow server cannot
slow the storm down and hide its own delay) or at full speed (as fast as set-ups complete,
with at most ``plan.connect_concurrency`` under way). Each attempt is timed from the start of
its TCP connect until the connection can carry a message:

- raw WebSocket: the HTTP upgrade answered;
- Socket.IO, WebSocket only: the Engine.IO open packet and the namespace connect reply;
- Socket.IO, default path (``polling-upgrade``): the Engine.IO open packet over an HTTP
  long-polling GET, then a WebSocket to the same session, the upgrade probe, and the
  namespace connect over it, as python-socketio's client does by default.

Then each connection sends one message and verifies its echo (its latency is the row's), so a
set-up counts only if the connection works. Attempts that fail, or have not finished when the
storm's time limit (``duration_s``) runs out, are counted and described. Connections stay open
until the storm is over, as a crowd of clients arriving would, and are then closed.

The WebSocket side is the fast worker's picows client; the one polling GET of the default path
goes over a new TCP connection each (``bench.load.http1``), as a new client would open. Bytes
on the wire are each connection's from its TCP connect through its first echo
(``storm_wire_counts``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import monotonic_ns
from typing import Any

from bench.load.alarm import Alarm
from bench.load.client import EchoConnection, Tally, connect
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerFailed,
    WorkerHooks,
    WorkerRun,
    drain,
    open_nothing,
    report_negotiated,
    run_worker,
    worker_main,
)
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.polling_worker import http_clients, polling_url, request_target, split_payload
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S
from bench.metrics import wire
from bench.metrics.wire import WireBytes
from bench.protocol import socketio as sio
from bench.protocol.exchange import Exchange
from bench.spec import POLLING_UPGRADE
from bench.tls import client_context

Opener = Callable[[int], Awaitable[EchoConnection]]


def attempt_indices(worker_index: int, worker_count: int, count: int) -> range:
    """This worker's attempts among the storm's, interleaved as open-loop messages are."""
    return range(worker_index, worker_index + worker_count * count, worker_count)


def intended_start_ns(start_ns: int, rate_conns_s: float, attempt: int) -> int:
    """When attempt ``attempt`` of a fixed-rate storm is due."""
    return start_ns + int(attempt * NS_PER_S / rate_conns_s)


async def open_session(
    url: str, local_addr: tuple[str, int] | None, timeout_s: float
) -> tuple[str, WireBytes | None]:
    """Engine.IO's open over long-polling: one GET on a new TCP connection, closed after it
    (the socket's counters are read first); the session id, and the GET's bytes."""
    client, _ = http_clients(url, local_addr)
    try:
        status, body = await client.request("GET", request_target(url), timeout_s)
    finally:
        client.close()
    counted = wire.total(client.sockets)
    packets = split_payload(body.decode())
    if status != 200 or not packets:
        raise ConnectionError(f"Engine.IO open over polling answered {status}")
    opened = sio.decode_open(packets[0])
    if "websocket" not in opened.upgrades:
        raise ConnectionError("the server offers no upgrade to WebSocket")
    return opened.sid, counted


class Storm:
    """One worker's share of a storm: attempts, their set-up times, what failed."""

    def __init__(self, plan: WorkerPlan, tally: Tally, opener: Opener) -> None:
        self.plan = plan
        self.tally = tally
        self.opener = opener
        self.setup = LatencyRecorder()
        self.opened: list[EchoConnection] = []
        self.refused = 0  # attempts that failed on their own (refused, timed out, rejected)
        self.failures = 0
        self.last_done_ns = 0

    async def attempt(self, index: int) -> None:
        started = monotonic_ns()
        try:
            connection = await asyncio.wait_for(self.opener(index), self.plan.connect_timeout_s)
        except Exception as exc:  # refused, timed out, handshake or namespace rejected
            self.refused += 1
            self.tally.note_error(f"connection attempt {index} failed: {exc!r:.120}")
            return
        finally:
            self.last_done_ns = max(self.last_done_ns, monotonic_ns())
        self.setup.append(monotonic_ns() - started)
        self.opened.append(connection)
        connection.send(monotonic_ns())  # the first message: its echo proves the set-up

    async def run(self, start_ns: int) -> None:
        """All attempts, paced or at full speed, within the storm's time limit. Afterwards
        ``failures`` is every attempt that did not give a connection: refused, timed out,
        cut off by the limit, or never made because the limit came first."""
        plan = self.plan
        indices = attempt_indices(plan.worker_index, plan.worker_count, plan.connections)
        tasks: list[asyncio.Future[None]] = []
        limit_ns = start_ns + int(plan.duration_s * NS_PER_S)
        launcher = asyncio.ensure_future(self._launch(indices, start_ns, tasks))
        try:
            await asyncio.wait_for(asyncio.shield(launcher), _seconds_until(limit_ns))
            if tasks:
                await asyncio.wait(tasks, timeout=_seconds_until(limit_ns))
        except TimeoutError:
            pass
        finally:
            launcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await launcher
            unfinished = [task for task in tasks if not task.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
        # Counted from what was opened, once every attempt is over: an attempt cut off just as
        # it succeeded is an opened connection, never also a failure.
        self.failures = len(indices) - len(self.opened)
        cut_off = self.failures - self.refused
        if cut_off:
            self.tally.note_error(
                f"{cut_off} connection attempts unfinished or not started within the storm's "
                f"limit of {plan.duration_s} s"
            )

    async def _launch(
        self, indices: range, start_ns: int, tasks: list[asyncio.Future[None]]
    ) -> None:
        rate = self.plan.rate_conns_s
        if rate > 0:
            alarm = Alarm()
            try:
                for index in indices:
                    due = intended_start_ns(start_ns, rate, index)
                    await alarm.sleep_until(due)
                    self.tally.send_lag.append(monotonic_ns() - due)
                    tasks.append(asyncio.ensure_future(self.attempt(index)))
            finally:
                alarm.close()
            return
        await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / NS_PER_S))
        gate = asyncio.Semaphore(self.plan.connect_concurrency)

        async def gated(index: int) -> None:
            try:
                await self.attempt(index)
            finally:
                gate.release()

        for index in indices:
            await gate.acquire()
            tasks.append(asyncio.ensure_future(gated(index)))


def _seconds_until(t_ns: int) -> float:
    return max(0.0, (t_ns - monotonic_ns()) / NS_PER_S)


def make_opener(plan: WorkerPlan, exchange: Exchange, tally: Tally) -> Opener:
    max_frame_bytes = plan.payload_bytes + FRAME_SLACK_BYTES
    sources = plan.source_addresses

    def local_addr(index: int) -> tuple[str, int] | None:
        return (sources[index % len(sources)], 0) if sources else None

    # Over TLS (wss://) every storm's set-up is a TLS handshake too, verified as the echo's.
    context = None
    if plan.url.startswith("wss://"):
        context = client_context(Path(plan.tls_ca) if plan.tls_ca else None, plan.tls_insecure)

    async def websocket_only(index: int) -> EchoConnection:
        return await connect(
            plan.url, exchange, tally, False, plan.connect_timeout_s, max_frame_bytes,
            local_addr(index), ssl_context=context,
        )  # fmt: skip

    async def polling_then_upgrade(index: int) -> EchoConnection:
        sid, get_bytes = await open_session(
            polling_url(plan.url), local_addr(index), plan.connect_timeout_s
        )
        connection = await connect(
            f"{plan.url}&sid={sid}", exchange, tally, False, plan.connect_timeout_s,
            max_frame_bytes, local_addr(index), upgrade=True,
        )  # fmt: skip
        connection.http_requests = 1
        connection.earlier_wire = get_bytes
        return connection

    return polling_then_upgrade if plan.transport == POLLING_UPGRADE else websocket_only


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.mode != "connect":
        raise WorkerFailed("the connect worker runs connect storms only")
    if plan.transport == POLLING_UPGRADE and plan.protocol != "socketio":
        raise WorkerFailed("the polling-upgrade path is Socket.IO's")
    exchange = Exchange(plan.protocol, plan.payload_kind, plan.payload_bytes)

    async def measure_every_first_message(run: WorkerRun[EchoConnection]) -> None:
        # Every first message is measured; sends are never cut off by a window. No wait: the
        # storm paces its attempts from the start time itself.
        run.tally.window_start_ns, run.tally.window_end_ns = run.start_ns, 2**62

    async def storm_in_window(run: WorkerRun[EchoConnection]) -> None:
        storm = Storm(run.plan, run.tally, make_opener(run.plan, exchange, run.tally))
        storm.opened = run.connections  # the run closes whatever the storm opened
        await storm.run(run.start_ns)
        storm.setup.flush()
        run.connect_times = storm.setup
        run.connect_s = max(0.0, (storm.last_done_ns - run.start_ns) / NS_PER_S)
        run.connect_failures = storm.failures

    async def drain_and_count_storm(run: WorkerRun[EchoConnection]) -> dict[str, Any]:
        await drain(run.connections, run.plan.drain_timeout_s)
        return storm_wire_counts(run.connections)

    # Nothing opens before "connected": the set-ups are the measurement, made by the storm
    # after the start signal.
    hooks = WorkerHooks(
        open=open_nothing, start=measure_every_first_message, drive=storm_in_window,
        finish=drain_and_count_storm, report=report_negotiated,
    )  # fmt: skip
    return await run_worker(plan, hooks)


def storm_wire_counts(connections: list[EchoConnection]) -> dict[str, Any]:
    """Bytes each connection carried from its TCP connect through its first echo (set-up and
    one message; the default path's polling GET included), read before the close; frames are
    not counted (the handshake's frames are not messages'). None when any socket is unreadable."""
    counted = wire.total(s for c in connections for s in c.tcp_sockets())
    earlier = [c.earlier_wire for c in connections]
    if counted is None or any(e is None for e in earlier):
        up = down = None
    else:
        up = counted.up + sum(e.up for e in earlier if e is not None)
        down = counted.down + sum(e.down for e in earlier if e is not None)
    requests = [c.http_requests for c in connections]
    return {
        "wire_messages": sum(c.next_seq for c in connections),
        "wire_bytes_up": up,
        "wire_bytes_down": down,
        "http_requests": sum(requests) if all(r is not None for r in requests) else None,
    }


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
