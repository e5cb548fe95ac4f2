"""Socket.IO over HTTP long-polling: ``python -m bench.load.polling_worker``.

What users get when a proxy blocks WebSockets. Each connection is an Engine.IO v4 polling
session spoken by hand over the generator's own HTTP/1.1 client (``bench.load.http1``;
python-socketio's AsyncClient would add its own cost and cannot be told to stay on polling
without also probing for an upgrade): one long-poll GET always pending for what the server
sends, and POSTs carrying what the client sends, packets joined by the record separator (0x1e)
as Engine.IO does. Each connection has its own pair of keep-alive HTTP connections, as a
browser uses, so bytes on the wire (headers included) come from the kernel's counters of those
sockets, and every HTTP request is counted.

Text payloads only: binary over polling travels base64-encoded, a cost of its own.
The accounting (window, verification, latency from the intended send time) and the closed
and open loops are the library worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from urllib.parse import urlsplit, urlunsplit

from bench.load.client import Tally
from bench.load.engine import WorkerFailed, WorkerHooks, run_worker, worker_main
from bench.load.http1 import HttpClient
from bench.load.library_worker import EVENT, LibraryConnection, Message, drive
from bench.load.plan import WorkerPlan, WorkerReport
from bench.protocol import socketio as sio

RECORD_SEPARATOR = "\x1e"
# The long-poll GET waits for data; the server answers an empty poll with a ping only after
# its ping interval (an hour, by the contract), so a GET may wait for the whole run.
POLL_TIMEOUT_S = 3600.0
# An HTTP answer to anything but a long poll should come at once.
REQUEST_TIMEOUT_S = 10.0
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


class PollingConnection(LibraryConnection):
    def __init__(
        self, plan: WorkerPlan, tally: Tally, poller: HttpClient, poster: HttpClient, target: str
    ) -> None:
        super().__init__(plan, tally)
        # Two keep-alive connections, as a browser uses: the pending poll, and the POSTs.
        self.poller = poller
        self.poster = poster
        self.target = target  # the session's path and query
        self.pending: list[str] = []
        self.wake_writer = asyncio.Event()
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None

    @property
    def http_requests(self) -> int:
        return self.poller.requests + self.poster.requests

    def start(self) -> None:
        self.reader = asyncio.ensure_future(self._poll())
        self.writer = asyncio.ensure_future(self._post_pending())

    def tcp_sockets(self) -> list[socket.socket]:
        # A socket whose connection closed answers with its last counters (CountedSocket);
        # one that cannot be read makes the count unknown rather than short.
        return [*self.poller.sockets, *self.poster.sockets]

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
        except (ConnectionError, OSError, TimeoutError) as exc:
            self._lost(exc)

    async def _post(self, body: str) -> None:
        status, answer = await self.poster.request(
            "POST", self.target, REQUEST_TIMEOUT_S, body.encode()
        )
        # Engine.IO says "ok"; python-engineio answers "OK".
        if status != 200 or answer.lower() != b"ok":
            raise ConnectionError(f"POST answered {status} {answer!r:.60}")

    async def _poll(self) -> None:
        try:
            while True:
                status, body = await self.poller.request("GET", self.target, POLL_TIMEOUT_S)
                if status != 200:
                    raise ConnectionError(f"poll answered {status}")
                for packet in split_payload(body.decode()):
                    await self._handle(packet)
        except (ConnectionError, OSError, TimeoutError, UnicodeDecodeError) as exc:
            self._lost(exc)

    async def _handle(self, packet: str) -> None:
        if packet.startswith(_EVENT_PREFIX) and packet.endswith("]"):
            try:
                message = json.loads(packet[len(_EVENT_PREFIX) : -1])
            except (ValueError, RecursionError):  # RecursionError: nested too deep
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
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            # Engine.IO's close packet ends the session on the server, and its pending poll.
            await self._post("1")
        for task in (self.reader, self.writer):
            if task is not None:
                task.cancel()
        self.poller.close()
        self.poster.close()


async def handshake(poller: HttpClient, poster: HttpClient, target: str, timeout_s: float) -> str:
    """Open an Engine.IO session and connect the default namespace; returns the session's
    path and query."""
    status, body = await poller.request("GET", target, timeout_s)
    packets = split_payload(body.decode())
    if status != 200 or not packets:
        raise WorkerFailed(f"Engine.IO open over polling answered {status}")
    sid = sio.decode_open(packets[0]).sid
    session_target = f"{target}&sid={sid}"
    status, _ = await poster.request(
        "POST", session_target, timeout_s, sio.encode_connect().encode()
    )
    if status != 200:
        raise WorkerFailed(f"namespace connect POST answered {status}")
    status, body = await poller.request("GET", session_target, timeout_s)
    replies = split_payload(body.decode())
    if not replies:
        raise WorkerFailed("no namespace connect reply over polling")
    sio.decode_connect_reply(replies[0])
    return session_target


def http_clients(url: str, local_addr: tuple[str, int] | None) -> tuple[HttpClient, HttpClient]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    return HttpClient(host, port, local_addr), HttpClient(host, port, local_addr)


def request_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def connect(
    plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
) -> LibraryConnection:
    url = polling_url(plan.url)
    poller, poster = http_clients(url, local_addr)
    try:
        target = await handshake(poller, poster, request_target(url), plan.connect_timeout_s)
    except BaseException:
        poller.close()
        poster.close()
        raise
    connection = PollingConnection(plan, tally, poller, poster, target)
    connection.start()
    return connection


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.protocol != "socketio" or plan.payload_kind != "text" or plan.ack:
        raise WorkerFailed("long-polling runs Socket.IO text echoes only (no binary, no acks)")
    if plan.slots > 1:
        raise WorkerFailed("long-polling does not run time-sliced (set slice_s to 0)")
    return await run_worker(plan, WorkerHooks(connect=connect, drive=drive))


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
