"""Reconnect storms: ``python -m bench.load.reconnect_worker``.

Clients on the libraries' own reconnecting clients, the way applications use them: raw
WebSocket on websockets' ``async for websocket in connect(...)`` loop, Socket.IO on
python-socketio's ``AsyncClient`` with reconnection on. Both get the same backoff
(``bench.load.reconnect.BACKOFF``). After the start signal each client sends one request on its
own tick (``plan.rate_msgs_s`` over all clients) and waits for the reply (Socket.IO: an
acknowledged emit; raw: the echo), verifying it byte for byte. The harness kills the server
(SIGKILL) ``warmup_s`` after the start and restarts it on the same port; a tick that finds its
client disconnected, or whose reply never comes, is a lost message. As soon as a client is
connected again it sends one probe message; the time its reply arrives is when the client
recovered. The run ends ``duration_s`` after the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
from time import monotonic_ns
from typing import Any

import socketio
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.load.alarm import sleep_until
from bench.load.client import Tally
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerFailed,
    WorkerHooks,
    WorkerRun,
    count_nothing,
    no_window,
    run_worker,
    worker_main,
)
from bench.load.library_worker import EVENT, socketio_endpoint
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.reconnect import BACKOFF
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S
from bench.metrics import histogram as hist
from bench.protocol.exchange import payload

# A reply later than this counts as lost (the server is gone, or the client is reconnecting).
REPLY_TIMEOUT_S = 2.0
# Seconds for every client's first connection.
SETUP_TIMEOUT_S = 60.0
PROBE_SEQ = 0xFFFFFFF  # the probe's sequence number: never a tick's


class Client:
    """One client's schedule and counts; the stacks below move its messages."""

    def __init__(self, index: int, plan: WorkerPlan, tally: Tally) -> None:
        self.index = index
        self.plan = plan
        self.tally = tally
        self.period_ns = int(plan.connections / plan.rate_msgs_s * NS_PER_S)
        self.sent = 0
        self.received = 0
        self.unexpected = 0
        self.down = False
        self.recovered_ns = -1
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.start_ns = 0
        self.end_ns = 0

    def message(self, seq: int, t_ns: int) -> str:
        # A client's messages are told apart by their sequence numbers, the probe's by its own.
        return payload(seq, t_ns, "text", self.plan.payload_bytes).decode()

    def ticks(self) -> list[int]:
        """Intended send times of this client's messages, spread over the clients."""
        first = self.start_ns + self.period_ns * self.index // self.plan.connections
        return list(range(first, self.end_ns, self.period_ns))

    def check(self, sent: str, reply: Any, probe: bool) -> bool:
        if reply != sent:
            self.unexpected += 1
            self.tally.note_error(f"client {self.index}: wrong reply {reply!r:.60}")
            return False
        if probe and self.down:
            self.down = False
            if self.recovered_ns < 0:
                self.recovered_ns = monotonic_ns()
        return True

    def lost_connection(self) -> None:
        self.down = True


async def run_websockets_client(client: Client, go: asyncio.Future[int]) -> None:
    plan = client.plan
    connections = websockets_connect(
        plan.url, compression=None, ping_interval=None, open_timeout=plan.connect_timeout_s,
        max_size=plan.payload_bytes + FRAME_SLACK_BYTES, reconnect_delays=BACKOFF.delays,
    )  # fmt: skip
    ticks: list[int] = []
    next_tick = 0
    async for websocket in connections:
        try:
            if not client.ready.done():
                client.ready.set_result(None)
                await go
                ticks = client.ticks()
            elif client.down:  # connected again: a probe tells when messages flow
                probe = client.message(PROBE_SEQ, monotonic_ns())
                await websocket.send(probe)
                reply = await asyncio.wait_for(websocket.recv(), REPLY_TIMEOUT_S)
                client.check(probe, reply, probe=True)
            while next_tick < len(ticks):
                intended = ticks[next_tick]
                await sleep_until(intended)
                next_tick += 1
                client.sent += 1
                message = client.message(next_tick, intended)
                await websocket.send(message)
                reply = await asyncio.wait_for(websocket.recv(), REPLY_TIMEOUT_S)
                if client.check(message, reply, probe=False):
                    client.received += 1
            await websocket.close()
            return
        except (ConnectionClosed, TimeoutError, OSError, InvalidHandshake):
            client.lost_connection()
            # A reply that never came leaves the connection open: drop it before the loop
            # opens the next one.
            with contextlib.suppress(Exception):
                websocket.transport.abort()
            # Ticks that passed while disconnected are lost: skip to the next one due.
            now = monotonic_ns()
            while next_tick < len(ticks) and ticks[next_tick] < now:
                next_tick += 1
                client.sent += 1
            if next_tick >= len(ticks):
                return


async def run_socketio_client(client: Client, go: asyncio.Future[int]) -> None:
    plan = client.plan
    base_url, path = socketio_endpoint(plan.url)
    sio = socketio.AsyncClient(
        reconnection=True, reconnection_delay=BACKOFF.delay_s,
        reconnection_delay_max=BACKOFF.delay_max_s,
        randomization_factor=BACKOFF.randomization_s, logger=False, engineio_logger=False,
        handle_sigint=False,
        websocket_extra_options={"max_msg_size": plan.payload_bytes + FRAME_SLACK_BYTES},
    )  # fmt: skip
    connected = asyncio.Event()

    async def on_connect() -> None:
        connected.set()

    async def on_disconnect(*reason: Any) -> None:
        connected.clear()
        client.lost_connection()

    sio.on("connect", on_connect)
    sio.on("disconnect", on_disconnect)

    async def request(message: str) -> Any:
        return await sio.call(EVENT, message, timeout=REPLY_TIMEOUT_S)

    async def probe_after_reconnects() -> None:
        while True:
            await connected.wait()
            if client.down:
                with contextlib.suppress(socketio.exceptions.SocketIOError, TimeoutError):
                    message = client.message(PROBE_SEQ, monotonic_ns())
                    client.check(message, await request(message), probe=True)
            await asyncio.sleep(0.01)
            if client.down:
                continue
            while connected.is_set():
                await asyncio.sleep(0.05)

    await sio.connect(
        base_url, transports=["websocket"], socketio_path=path,
        wait_timeout=plan.connect_timeout_s,
    )  # fmt: skip
    prober: asyncio.Future[None] | None = None
    try:
        client.ready.set_result(None)
        await go
        prober = asyncio.ensure_future(probe_after_reconnects())
        for seq, intended in enumerate(client.ticks(), start=1):
            await sleep_until(intended)
            client.sent += 1
            if not sio.connected or not connected.is_set():
                continue  # lost: the client is reconnecting
            message = client.message(seq, intended)
            try:
                reply = await request(message)
            except (socketio.exceptions.SocketIOError, TimeoutError):
                client.lost_connection()
                continue
            if client.check(message, reply, probe=False):
                client.received += 1
    finally:
        if prober is not None:
            prober.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sio.disconnect(), 2.0)


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.mode != "reconnect" or plan.worker_count != 1:
        raise WorkerFailed("the reconnect worker runs reconnect storms in one process")
    # The clients are the libraries' own, each in a task that connects, reconnects and closes
    # by itself: the run holds no connections of its own, and closing is cancelling the tasks.
    clients: list[Client] = []
    tasks: list[asyncio.Future[None]] = []
    go: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def start_clients(run: WorkerRun[Any]) -> int:
        clients.extend(Client(i, plan, run.tally) for i in range(plan.connections))
        stack = run_socketio_client if plan.protocol == "socketio" else run_websockets_client
        tasks.extend(asyncio.ensure_future(stack(client, go)) for client in clients)
        started = monotonic_ns()
        waiting: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(c.ready for c in clients))
        )
        done, _ = await asyncio.wait(
            [waiting, *tasks], timeout=SETUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            waiting.cancel()
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            reason = repr(failed[0].exception()) if failed else "timed out"
            raise WorkerFailed(f"clients could not all connect: {reason:.200}")
        run.connect_s = (monotonic_ns() - started) / 1e9
        return len(clients)

    async def send_through_the_restart(run: WorkerRun[Any]) -> None:
        end_ns = run.start_ns + int((plan.warmup_s + plan.duration_s) * NS_PER_S)
        for client in clients:
            client.start_ns, client.end_ns = run.start_ns, end_ns
        go.set_result(run.start_ns)
        limit_s = (end_ns - monotonic_ns()) / NS_PER_S + REPLY_TIMEOUT_S + 5.0
        await asyncio.wait(tasks, timeout=max(0.0, limit_s))

    async def cancel_clients(run: WorkerRun[Any]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    def recovery_report(run: WorkerRun[Any], echoes: WorkerReport) -> WorkerReport:
        # Counted per client, not per connection: the echo report is not used.
        empty = hist.encode(LatencyRecorder().histogram)
        sent = sum(c.sent for c in clients)
        received = sum(c.received for c in clients)
        return WorkerReport(
            worker_index=0, connections=len(clients), sent=sent, received=received, missing=0,
            unexpected=sum(c.unexpected for c in clients), disconnects=0, latency_hist=empty,
            send_lag_hist=empty, connect_hist=empty, connect_s=0.0,
            error_samples=run.tally.error_samples, lost=sent - received,
            recovered_ns=[c.recovered_ns for c in clients],
        )  # fmt: skip

    # Each client waits for its own replies: nothing to drain afterwards, no wire counts.
    hooks: WorkerHooks[Any] = WorkerHooks(
        open=start_clients, start=no_window, drive=send_through_the_restart,
        finish=count_nothing, close=cancel_clients, report=recovery_report,
    )  # fmt: skip
    return await run_worker(plan, hooks)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
