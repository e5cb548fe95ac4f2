"""Socket.IO over HTTP long-polling: ``python -m bench.load.polling_worker``.

What users get when a proxy blocks WebSockets. Each connection is an Engine.IO v4 polling
session spoken by hand over aiohttp's HTTP client (python-socketio's AsyncClient would add its
own cost and cannot be told to stay on polling without also probing for an upgrade): one
long-poll GET always pending for what the server sends, and POSTs carrying what the client
sends, packets joined by the record separator (0x1e) as Engine.IO does. Each connection has
its own pair of keep-alive HTTP connections, so bytes on the wire (headers included) come from
the kernel's counters of those sockets, and every HTTP request is counted.

Text payloads only: binary over polling travels base64-encoded, a cost of its own.
The accounting (window, verification, latency from the intended send time) and the closed
and open loops are the library worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from bench.load.client import Tally
from bench.load.engine import WorkerFailed, run_worker, worker_main
from bench.load.library_worker import EVENT, LibraryConnection, Message, drive
from bench.load.plan import WorkerPlan, WorkerReport
from bench.metrics import wire
from bench.protocol import socketio as sio

RECORD_SEPARATOR = "\x1e"
# The long-poll GET waits for data; the server answers an empty poll with a ping only after
# its ping interval (an hour, by the contract), so a GET may wait for the whole run.
POLL_TIMEOUT_S = 3600.0
# An HTTP answer to anything but a long poll should come at once.
REQUEST_TIMEOUT_S = 10.0
# No gzip: Engine.IO compresses polling responses for clients that accept it; the contract
# has compression off everywhere.
HEADERS = {"Accept-Encoding": "identity", "Content-Type": "text/plain;charset=UTF-8"}
_EVENT_PREFIX = '42["' + EVENT + '",'


def polling_url(websocket_url: str) -> str:
    """The Engine.IO polling URL for the WebSocket URL the fast worker would open."""
    parts = urlsplit(websocket_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    query = parts.query.replace("transport=websocket", "transport=polling")
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def encode_event(message: str) -> str:
    return _EVENT_PREFIX + json.dumps(message) + "]"


def split_payload(body: str) -> list[str]:
    """Engine.IO v4 polling payload: packets separated by 0x1e."""
    return body.split(RECORD_SEPARATOR) if body else []


class CountedSocket(socket.socket):
    """A client socket whose TCP_INFO stays readable after its connection closed.

    When the server ends a keep-alive connection, aiohttp closes the transport, and uvloop
    detaches the socket object before closing its descriptor (asyncio's own loop closes
    it); the kernel's counters are read just before either and answered from then on, so
    the bytes the connection carried still count.
    """

    _final_tcp_info: bytes | None = None

    def _keep_counters(self) -> None:
        if self._final_tcp_info is None and self.fileno() >= 0:
            with contextlib.suppress(OSError):
                self._final_tcp_info = super().getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_INFO, wire.TCP_INFO_BYTES
                )

    def detach(self) -> int:
        self._keep_counters()
        return super().detach()

    def close(self) -> None:
        self._keep_counters()
        super().close()

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        final = self._final_tcp_info
        if final is not None and (level, option) == (socket.IPPROTO_TCP, socket.TCP_INFO):
            return final[:buflen] if buflen else final
        return (
            super().getsockopt(level, option, buflen)
            if buflen
            else super().getsockopt(level, option)
        )


class PollingConnection(LibraryConnection):
    def __init__(
        self,
        plan: WorkerPlan,
        tally: Tally,
        session: aiohttp.ClientSession,
        url: str,
        sockets: list[socket.socket],
    ) -> None:
        super().__init__(plan, tally)
        self.session = session
        self.url = url
        # Every socket the session's connector opened (see ``connect``), for the wire counts.
        self.sockets = sockets
        self.pending: list[str] = []
        self.wake_writer = asyncio.Event()
        self.http_requests = 0
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.ensure_future(self._poll())
        self.writer = asyncio.ensure_future(self._post_pending())

    def tcp_sockets(self) -> list[socket.socket]:
        # A socket whose connection closed answers with its last counters (CountedSocket);
        # one that cannot be read makes the count unknown rather than short.
        return list(self.sockets)

    async def transmit(self, message: Message) -> None:
        assert isinstance(message, str)
        self.pending.append(encode_event(message))
        self.wake_writer.set()

    async def _post_pending(self) -> None:
        # Whatever queued up while the previous POST was under way leaves in the next one.
        try:
            while True:
                await self.wake_writer.wait()
                self.wake_writer.clear()
                body, self.pending = RECORD_SEPARATOR.join(self.pending), []
                await self._post(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._lost(exc)

    async def _post(self, body: str) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with self.session.post(
            self.url, data=body, headers=HEADERS, timeout=timeout
        ) as response:
            self.http_requests += 1
            answer = await response.text()
            # Engine.IO says "ok"; python-engineio answers "OK".
            if response.status != 200 or answer.lower() != "ok":
                raise aiohttp.ClientError(f"POST answered {response.status} {answer!r:.60}")

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)
        try:
            while True:
                async with self.session.get(self.url, headers=HEADERS, timeout=timeout) as response:
                    self.http_requests += 1
                    body = await response.text()
                    if response.status != 200:
                        raise aiohttp.ClientError(f"poll answered {response.status}")
                for packet in split_payload(body):
                    await self._handle(packet)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._lost(exc)

    async def _handle(self, packet: str) -> None:
        if packet.startswith(_EVENT_PREFIX) and packet.endswith("]"):
            try:
                message = json.loads(packet[len(_EVENT_PREFIX) : -1])
            except ValueError:
                self.note_unexpected(packet)
                return
            if isinstance(message, str):
                await self.receive(message)
            else:
                self.note_unexpected(packet)
        elif packet == sio.EIO_PING:  # heartbeat: answer it, it is not a message
            self.pending.append(sio.EIO_PONG)
            self.wake_writer.set()
        elif packet in ("6", "1"):  # noop (ends a poll during an upgrade), close
            if packet == "1":
                self.note_disconnected()
        else:
            self.note_unexpected(packet)

    def _lost(self, exc: BaseException) -> None:
        if not self.closing:
            self.tally.note_error(f"polling request failed: {exc!r:.80}")
            self.note_disconnected()

    async def close(self, timeout_s: float) -> None:
        self.closing = True
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            # Engine.IO's close packet ends the session on the server, and its pending poll.
            await asyncio.wait_for(self._post("1"), timeout_s)
        for task in (self.reader, self.writer):
            if task is not None:
                task.cancel()
        await self.session.close()


async def handshake(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    """Open an Engine.IO session and connect the default namespace; returns the session URL."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with session.get(url, headers=HEADERS, timeout=timeout) as response:
        body = await response.text()
    packets = split_payload(body)
    if response.status != 200 or not packets:
        raise WorkerFailed(f"Engine.IO open over polling answered {response.status}")
    sid = sio.decode_open(packets[0]).sid
    session_url = f"{url}&sid={sid}"
    async with session.post(
        session_url, data=sio.encode_connect(), headers=HEADERS, timeout=timeout
    ) as response:
        if response.status != 200:
            raise WorkerFailed(f"namespace connect POST answered {response.status}")
    async with session.get(session_url, headers=HEADERS, timeout=timeout) as response:
        body = await response.text()
    replies = split_payload(body)
    if not replies:
        raise WorkerFailed("no namespace connect reply over polling")
    sio.decode_connect_reply(replies[0])
    return session_url


async def connect(
    plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
) -> LibraryConnection:
    sockets: list[socket.socket] = []

    def open_socket(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = CountedSocket(family=family, type=kind, proto=proto)
        sockets.append(sock)
        return sock

    # Two keep-alive connections per Engine.IO session, as a browser uses: the pending poll
    # and the POSTs.
    connector = aiohttp.TCPConnector(limit=2, local_addr=local_addr, socket_factory=open_socket)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    try:
        session_url = await handshake(session, polling_url(plan.url), plan.connect_timeout_s)
    except BaseException:
        await session.close()
        raise
    connection = PollingConnection(plan, tally, session, session_url, sockets)
    connection.start()
    return connection


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.protocol != "socketio" or plan.payload_kind != "text" or plan.ack:
        raise WorkerFailed("long-polling runs Socket.IO text echoes only (no binary, no acks)")
    if plan.slots > 1:
        raise WorkerFailed("long-polling does not run time-sliced (set slice_s to 0)")
    return await run_worker(plan, connect, drive)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
