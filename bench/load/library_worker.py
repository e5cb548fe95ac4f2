"""A generator worker on the stock library clients: ``python -m bench.load.library_worker``.

It speaks the same stdin/stdout protocol as ``bench.load.worker`` and keeps the same accounting
(window, verification, latency from the intended send time), but each connection is the client a
user would actually write: websockets' asyncio client for raw WebSocket, python-socketio's
``AsyncClient`` for Socket.IO. Its latencies and rates therefore include the client library's
own cost; the fast worker's show the server's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from time import monotonic_ns
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import socketio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed

from bench.load.client import Accounting, Tally
from bench.load.engine import (
    CLOSE_TIMEOUT_S,
    FRAME_SLACK_BYTES,
    WorkerFailed,
    WorkerHooks,
    WorkerRun,
    close_all,
    run_worker,
    worker_main,
)
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.schedule import NS_PER_S, constant_rate
from bench.protocol.exchange import Exchange, FrameBuilder

# A message as the libraries hand it over: str for text, bytes for binary. The type is part of
# the check: a text echo of a binary message is not found in the table of outstanding messages.
Message = str | bytes

EVENT = "echo"
SOCKETIO_DEFAULT_PATH = "socket.io"
# Engine.IO adds these itself; the rest of the query is passed on to the server.
ENGINEIO_QUERY_KEYS = frozenset({"EIO", "transport"})


class LibraryConnection(Accounting):
    """One connection's accounting (``Accounting``, shared with the fast client), keyed here by
    the exact message the library hands over; subclasses move the messages."""

    def __init__(self, plan: WorkerPlan, tally: Tally) -> None:
        super().__init__(tally, closed_loop=plan.mode == "closed")
        self.payload_bytes = plan.payload_bytes
        # A json payload is text to these clients: python-socketio's client sends it as a
        # string argument, not as the object the fast client sends.
        self.as_text = plan.payload_kind != "binary"
        # The libraries frame the payload themselves: build it as the raw exchange does, from
        # precomputed templates, so the client's cost is not inflated by the harness's own.
        raw = Exchange("raw", plan.payload_kind, plan.payload_bytes)
        self.payload_and_reply = FrameBuilder(raw).body_and_reply

    async def transmit(self, message: Message) -> None:
        raise NotImplementedError

    async def close(self, timeout_s: float) -> None:
        raise NotImplementedError

    async def send(self, t_ns: int) -> None:
        """Send the next message, stamped with intended send time ``t_ns``; none from the window
        end on. A message for a connection that is gone stays outstanding: it counts as missing."""
        if t_ns >= self.window_end_ns:
            return
        seq = self.next_seq
        self.next_seq = seq + 1
        data, _ = self.payload_and_reply(seq, t_ns)
        message: Message = data.decode() if self.as_text else data
        self.outstanding[message] = t_ns
        if t_ns >= self.window_start_ns:
            self.sent += 1
        if not self.disconnected:
            await self.transmit(message)

    async def receive(self, message: Message) -> None:
        now = monotonic_ns()
        sent_ns = self.outstanding.pop(message, None)
        if sent_ns is None:
            self.note_unexpected(message)
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)
        if self.closed_loop:
            await self.send(now)

    def note_unexpected(self, what: object) -> None:
        self.unexpected += 1
        self.tally.note_error(f"unexpected message ({self._describe(what)})")

    def note_disconnected(self) -> None:
        if not self.closing and not self.disconnected:
            self.disconnected = True
            self.tally.note_error("connection closed by the server during the run")

    def _describe(self, what: object) -> str:
        if isinstance(what, str | bytes):
            return self.describe(
                what.encode() if isinstance(what, str) else what, self.payload_bytes
            )
        return f"{type(what).__name__}: {what!r:.60}"


class WebsocketsConnection(LibraryConnection):
    """Raw WebSocket on websockets' asyncio client; a reader task handles the echoes."""

    def __init__(self, plan: WorkerPlan, tally: Tally, websocket: ClientConnection) -> None:
        super().__init__(plan, tally)
        self.websocket = websocket
        # Runs until the connection closes or close() cancels it: its recv() needs no timeout
        # of its own, because every wait of the worker on it (drain, close) has one.
        self.reader = asyncio.ensure_future(self._read())

    async def transmit(self, message: Message) -> None:
        try:
            await self.websocket.send(message)
        except ConnectionClosed:
            self.note_disconnected()

    async def _read(self) -> None:
        recv = self.websocket.recv
        try:
            while True:
                await self.receive(await recv())
        except ConnectionClosed:
            self.note_disconnected()

    async def close(self, timeout_s: float) -> None:
        self.closing = True
        try:
            await asyncio.wait_for(self.websocket.close(), timeout_s)
        finally:
            self.reader.cancel()


class SocketioConnection(LibraryConnection):
    """Socket.IO on python-socketio's ``AsyncClient``. The library runs the handler of each
    incoming message in a task of its own; a closed-loop send happens in that task."""

    def __init__(self, plan: WorkerPlan, tally: Tally, client: Any) -> None:
        super().__init__(plan, tally)
        self.client = client
        self.ack = plan.ack
        # With acks the reply comes as the acknowledgement; an "echo" event is then unexpected,
        # and goes to the catch-all handler like any other event.
        if not plan.ack:
            client.on(EVENT, self._on_echo)
        client.on("*", self._on_other_event)
        client.on("disconnect", self._on_disconnect)

    async def transmit(self, message: Message) -> None:
        callback = partial(self._on_ack, message) if self.ack else None
        try:
            await self.client.emit(EVENT, message, callback=callback)
        except socketio.exceptions.SocketIOError:  # "/ is not a connected namespace"
            self.note_disconnected()

    async def _on_echo(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str | bytes):
            await self.receive(args[0])
        else:
            self.note_unexpected(args)

    async def _on_ack(self, expected: Message, *args: Any) -> None:
        # python-socketio matches the ack to its message by id; the payload must match too,
        # else the message stays outstanding (missing) and the reply counts as unexpected.
        if args == (expected,):  # str never equals bytes, so the type is checked too
            await self.receive(expected)
        else:
            self.note_unexpected(args)

    async def _on_other_event(self, event: str, *args: Any) -> None:
        self.note_unexpected((event, *args))

    async def _on_disconnect(self, *reason: Any) -> None:
        self.note_disconnected()

    async def close(self, timeout_s: float) -> None:
        self.closing = True
        await asyncio.wait_for(self.client.disconnect(), timeout_s)


def socketio_endpoint(url: str) -> tuple[str, str]:
    """The server URL and ``socketio_path`` python-socketio wants, from the WebSocket URL the
    fast worker opens (``ws://host:port/socket.io/?EIO=4&transport=websocket``).

    The scheme goes back to http(s); the path becomes ``socketio_path`` (python-socketio puts
    it back between the host and the query); Engine.IO's own query keys are dropped, since the
    client adds them, and any other query parameters are kept.
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in ENGINEIO_QUERY_KEYS
    ]
    base = urlunsplit((scheme, parts.netloc, "", urlencode(query), ""))
    return base, parts.path.strip("/") or SOCKETIO_DEFAULT_PATH


async def connect_websockets(
    plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
) -> LibraryConnection:
    kwargs: dict[str, Any] = {} if local_addr is None else {"local_addr": local_addr}
    websocket = await websockets_connect(
        plan.url,
        compression=None,
        ping_interval=None,
        max_size=plan.payload_bytes + FRAME_SLACK_BYTES,
        open_timeout=plan.connect_timeout_s,
        close_timeout=CLOSE_TIMEOUT_S,
        **kwargs,
    )
    return WebsocketsConnection(plan, tally, websocket)


async def connect_socketio(
    plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
) -> LibraryConnection:
    base_url, path = socketio_endpoint(plan.url)
    session_factory = None
    if local_addr is not None:
        # Called by the client when it connects; the client owns and closes the session.
        def session_factory() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=local_addr))

    client = socketio.AsyncClient(
        reconnection=False,
        logger=False,
        engineio_logger=False,
        # The worker must stop the way the coordinator stops it, not by the library's handler.
        handle_sigint=False,
        http_session=session_factory,
        websocket_extra_options={"max_msg_size": plan.payload_bytes + FRAME_SLACK_BYTES},
    )
    connection = SocketioConnection(plan, tally, client)
    try:
        await client.connect(
            base_url,
            transports=["websocket"],
            socketio_path=path,
            wait_timeout=plan.connect_timeout_s,
        )
    except BaseException:
        await close_all([connection])
        raise
    return connection


Connector = Callable[[WorkerPlan, Tally, tuple[str, int] | None], Awaitable[LibraryConnection]]
CONNECTORS: dict[str, Connector] = {"raw": connect_websockets, "socketio": connect_socketio}


async def run_closed_loop(connections: list[LibraryConnection], inflight: int, end_ns: int) -> None:
    # Each echo triggers the next send (LibraryConnection.receive); sends stop at end_ns.
    for connection in connections:
        for _ in range(inflight):
            await connection.send(monotonic_ns())
    await asyncio.sleep(max(0.0, (end_ns - monotonic_ns()) / NS_PER_S))


async def run_open_loop(
    connections: list[LibraryConnection], plan: WorkerPlan, tally: Tally, start_ns: int
) -> None:
    """The fast worker's schedule, message ``k`` on connection ``k % n``. Sending stops at the
    window end even when the client has fallen behind: what it could not send is noted, and
    its lag shows in ``send_lag``."""
    whole = constant_rate(start_ns, plan.rate_msgs_s, plan.warmup_s + plan.duration_s)
    schedule = whole.share(plan.worker_index, plan.worker_count)
    sends = [connection.send for connection in connections]
    count = len(sends)
    lag = tally.send_lag.append
    window_start, window_end = tally.window_start_ns, tally.window_end_ns
    sleep = asyncio.sleep
    intended_ns = schedule.intended_ns
    index = 0
    total = schedule.count
    while index < total:
        now = monotonic_ns()
        if now >= window_end:
            break
        intended = intended_ns(index)
        if intended > now:
            await sleep((intended - now) / NS_PER_S)
            continue
        await sends[index % count](intended)
        if intended >= window_start:
            lag(monotonic_ns() - intended)
        index += 1
    if index < total:
        tally.note_error(
            f"{total - index} scheduled messages not sent by the window end: "
            "the client could not keep up"
        )


async def drive(run: WorkerRun[LibraryConnection]) -> None:
    if run.plan.mode == "closed":
        await run_closed_loop(run.connections, run.plan.inflight, run.tally.window_end_ns)
    else:
        await run_open_loop(run.connections, run.plan, run.tally, run.start_ns)


async def connect(
    plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
) -> LibraryConnection:
    return await CONNECTORS[plan.protocol](plan, tally, local_addr)


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.slots > 1:
        raise WorkerFailed("the library clients do not run time-sliced (set slice_s to 0)")
    return await run_worker(plan, WorkerHooks(connect=connect, drive=drive))


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
