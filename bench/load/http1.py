"""A small HTTP/1.1 keep-alive client for the long-polling generator and the connect storms.

Written by hand because aiohttp's client spent more CPU per request than the Engine.IO servers
spent answering it: the polling worker on aiohttp used 74-98% of its core while loading one
server, so polling rows measured the generator. This client sends one request at a time per
connection, built from a fixed header template, and parses responses with httptools (llhttp,
the parser uvicorn uses). Its sockets are ``CountedSocket``s, whose kernel byte counters stay
readable after the connection closes (``bench.metrics.wire``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import httptools

from bench.metrics import wire


class CountedSocket(socket.socket):
    """A client socket whose TCP_INFO stays readable after its connection closed.

    ``keep_counters`` reads the kernel's counters while the descriptor is still open (the
    client calls it when the server ends the connection and before closing it itself: uvloop
    closes the descriptor before it detaches the socket object); they are answered from then
    on, so the bytes the connection carried still count.
    """

    _final_tcp_info: bytes | None = None

    def keep_counters(self) -> None:
        if self._final_tcp_info is None and self.fileno() >= 0:
            with contextlib.suppress(OSError):
                self._final_tcp_info = super().getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_INFO, wire.TCP_INFO_BYTES
                )

    def close(self) -> None:  # asyncio's own loop closes the socket object
        self.keep_counters()
        super().close()

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        final = self._final_tcp_info
        if final is not None and (level, option) == (socket.IPPROTO_TCP, socket.TCP_INFO):
            return final[:buflen] if buflen else final
        if buflen:
            return super().getsockopt(level, option, buflen)
        return super().getsockopt(level, option)


class _ResponseReader(asyncio.Protocol):
    """One TCP connection: hands each complete response to the request waiting for it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # uvloop's TCPTransport, which is not an asyncio.Transport subclass.
        self.transport: Any = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.sock: CountedSocket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool:
        # The server ended the connection; its descriptor is still open: keep the counters.
        if self.sock is not None:
            self.sock.keep_counters()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class HttpClient:
    """Requests to one server, one at a time, over a keep-alive connection that is reopened
    when the server has closed it. ``requests`` counts them; ``sockets`` holds every socket
    opened, for the wire counters."""

    def __init__(self, host: str, port: int, local_addr: tuple[str, int] | None = None) -> None:
        self.host = host
        self.port = port
        self.local_addr = local_addr
        self.sockets: list[CountedSocket] = []
        self.requests = 0
        self._connection: _ResponseReader | None = None
        # No gzip: Engine.IO compresses polling responses for clients that accept it, and the
        # contract has compression off everywhere.
        self._head = f"HTTP/1.1\r\nHost: {host}:{port}\r\nAccept-Encoding: identity\r\n"

    async def request(
        self, method: str, target: str, timeout_s: float, body: bytes = b""
    ) -> tuple[int, bytes]:
        """Status and body of one request (no compression is accepted); ``ConnectionError``
        when the connection fails, ``TimeoutError`` after ``timeout_s``."""
        return await asyncio.wait_for(self._request(method, target, body), timeout_s)

    async def _request(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._connection = await self._open()
        assert connection.transport is not None
        waiter = connection.waiter = asyncio.get_running_loop().create_future()
        head = f"{method} {target} {self._head}"
        if method != "GET":
            head += f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
        connection.transport.write(head.encode() + b"\r\n" + body)
        self.requests += 1
        answer: tuple[int, bytes] = await waiter
        return answer

    async def _open(self) -> _ResponseReader:
        loop = asyncio.get_running_loop()
        sock = CountedSocket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # As aiohttp's client and browsers do: no Nagle delay on small requests.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.local_addr is not None:
                sock.bind(self.local_addr)
            await loop.sock_connect(sock, (self.host, self.port))
            transport, connection = await loop.create_connection(_ResponseReader, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.sockets.append(sock)
        # uvloop may resolve create_connection before calling connection_made.
        connection.transport = transport
        connection.sock = sock
        return connection

    def close(self) -> None:
        connection = self._connection
        if connection is not None and connection.transport is not None:
            if connection.sock is not None:
                connection.sock.keep_counters()
            connection.transport.close()
