"""The generator's HTTP/1.1 client against a small loopback server: keep-alive, reopening after
the server closed, bad responses, timeouts, and byte counters that outlive their sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from bench.load.http1 import CountedSocket, HttpClient
from bench.metrics import wire

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSING = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def with_server(handler: Handler, test: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        try:
            await test(server.sockets[0].getsockname()[1])
        finally:
            server.close()

    uvloop.run(main())


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


def test_requests_share_one_keep_alive_connection_and_are_counted() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            seen.append(await read_request(reader))
            writer.write(OK)
        writer.close()

    async def test(port: int) -> None:
        client = HttpClient("127.0.0.1", port)
        assert await client.request("GET", "/a?x=1", 2.0) == (200, b"ok")
        assert await client.request("POST", "/b", 2.0, b"hello") == (200, b"ok")
        assert await client.request("GET", "/c", 2.0) == (200, b"ok")
        assert client.requests == 3 and len(client.sockets) == 1
        await asyncio.sleep(0.05)  # the server closes after three answers
        counted = wire.total(client.sockets)
        # The kernel's counters may include the FIN's one sequence number.
        assert counted is not None and 0 <= counted.up - sum(map(len, seen)) <= 1
        assert 0 <= counted.down - 3 * len(OK) <= 1
        client.close()

    with_server(handler, test)
    assert seen[0].startswith(b"GET /a?x=1 HTTP/1.1\r\n")
    assert b"Accept-Encoding: identity\r\n" in seen[0]
    assert seen[1].endswith(b"Content-Length: 5\r\n\r\nhello")


def test_a_connection_the_server_closed_is_reopened_and_still_counted() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CLOSING)
        writer.close()

    async def test(port: int) -> None:
        client = HttpClient("127.0.0.1", port)
        await client.request("GET", "/", 2.0)
        await asyncio.sleep(0.05)  # the server's close arrives
        await client.request("GET", "/", 2.0)
        assert len(client.sockets) == 2
        client.close()
        await asyncio.sleep(0.05)
        counted = wire.total(client.sockets)  # both sockets are closed by now
        assert counted is not None and 0 <= counted.down - 2 * len(CLOSING) <= 2

    with_server(handler, test)


@pytest.mark.parametrize("answer", [b"NOT HTTP AT ALL\r\n\r\n", b""])
def test_a_bad_or_missing_response_is_a_connection_error(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        writer.close()

    async def test(port: int) -> None:
        client = HttpClient("127.0.0.1", port)
        with pytest.raises(ConnectionError):
            await client.request("GET", "/", 2.0)
        client.close()

    with_server(handler, test)


def test_a_server_that_never_answers_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def test(port: int) -> None:
        client = HttpClient("127.0.0.1", port)
        with pytest.raises(TimeoutError):
            await client.request("GET", "/", 0.2)
        client.close()

    with_server(handler, test)


def test_a_closed_counted_socket_still_answers_with_its_last_counters() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = CountedSocket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
        peer, _ = server.accept()
        client.sendall(b"x" * 1000)
        assert peer.recv(2000)
        peer.sendall(b"y" * 500)
        assert client.recv(2000)
        peer.close()
        before = wire.read(client)
        client.keep_counters()  # as the HTTP client does before its descriptor is closed
        os.close(client.detach())
        after = wire.read(client)
        assert before is not None and after == before
        assert after.up >= 1000 and after.down >= 500
    finally:
        server.close()
        client.close()
