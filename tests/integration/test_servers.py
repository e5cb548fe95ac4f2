"""The servers under test, as real processes: life cycle, echo, the fairness contract, and
Engine.IO v4 / Socket.IO v5 as the Socket.IO servers speak it on the wire."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import picows
import pytest
from aiohttp import web
from picows import WSCloseCode, WSMsgType

from servers.common import FAIRNESS, LOOPS, listening_socket
from tests.conftest import (
    READY_TIMEOUT_S,
    TIME_FACTOR,
    ServerProcess,
    read_ready_port,
    stop_process,
)

pytestmark = pytest.mark.integration

RAW_SERVERS = ("websockets", "aiohttp")
SOCKETIO_SERVERS = ("socketio_aiohttp", "socketio_asgi")
ALL_SERVERS = RAW_SERVERS + SOCKETIO_SERVERS

RAW_PATH = "/"
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
POLLING_PATH = "/socket.io/?EIO=4&transport=polling"
# What browsers and most clients offer; a server that accepts answers with the same header.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

NETWORK_TIMEOUT_S = 5.0 * TIME_FACTOR
STOP_TIMEOUT_S = 5.0 * TIME_FACTOR

# Enough simultaneous departures that some are mid-cleanup when the stop arrives.
CLIENTS_LEAVING = 50

# Binary payload for the echo tests: every byte value, so nothing can be "fixed up" on the way.
BINARY_PAYLOAD = bytes(range(256))

Frame = tuple[WSMsgType, bytes]


def server_path(name: str) -> str:
    return SOCKETIO_PATH if name in SOCKETIO_SERVERS else RAW_PATH


# --- A WebSocket client that records frames --------------------------------------------------


class FrameRecorder(picows.WSListener):
    """Queues every data frame as ``(type, payload)`` and answers the server's close frame."""

    def __init__(self) -> None:
        # None marks the end of the connection.
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.close_code: WSCloseCode | None = None

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            transport.send_close(self.close_code)
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            self.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.frames.put_nowait(None)

    async def next_frame(self) -> Frame:
        """The next data frame; ConnectionError if the connection ends first."""
        frame = await asyncio.wait_for(self.frames.get(), NETWORK_TIMEOUT_S)
        if frame is None:
            raise ConnectionError(f"connection closed (close code {self.close_code})")
        return frame


@asynccontextmanager
async def connect(
    port: int, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[picows.WSTransport, FrameRecorder]]:
    transport, listener = await asyncio.wait_for(
        picows.ws_connect(FrameRecorder, f"ws://127.0.0.1:{port}{path}", extra_headers=headers),
        NETWORK_TIMEOUT_S,
    )
    assert isinstance(listener, FrameRecorder)
    try:
        yield transport, listener
    finally:
        transport.disconnect()
        await asyncio.wait_for(transport.wait_disconnected(), NETWORK_TIMEOUT_S)


async def offered_deflate_reply(port: int, path: str) -> str | None:
    """Offer permessage-deflate; return the server's ``Sec-WebSocket-Extensions`` answer, if any."""
    async with connect(port, path, {"Sec-WebSocket-Extensions": DEFLATE_OFFER}) as (transport, _):
        reply: str | None = transport.response.headers.get("Sec-WebSocket-Extensions")
        return reply


def oversized_text_frame_header(payload_bytes: int) -> bytes:
    """A client's masked, final text frame header announcing ``payload_bytes`` (RFC 6455 5.2)."""
    mask_key = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | 127]) + payload_bytes.to_bytes(8, "big") + mask_key


async def wait_closed_by_server(transport: picows.WSTransport) -> None:
    await asyncio.wait_for(transport.wait_disconnected(), NETWORK_TIMEOUT_S)


# --- Life cycle ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", ALL_SERVERS)
def test_prints_ready_and_stops_cleanly_on_signal(
    server_process: Callable[[str, str], ServerProcess], name: str, signum: int, loop: str
) -> None:
    server = server_process(name, loop)
    assert 0 < server.port < 65536
    server.process.send_signal(signum)
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0
    # stdout carries the READY line (already read) and nothing else.
    assert server.process.stdout is not None
    assert server.process.stdout.read() == b""


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_stops_cleanly_with_a_client_connected(
    server_process: Callable[[str, str], ServerProcess], name: str
) -> None:
    """A stop closes open connections instead of waiting for clients to leave."""
    server = server_process(name, "uvloop")

    async def scenario() -> Frame | None:
        async with connect(server.port, server_path(name)) as (transport, listener):
            last_frame = None
            if name in SOCKETIO_SERVERS:
                await listener.next_frame()  # Engine.IO open
                transport.send(WSMsgType.TEXT, b"40")
                await listener.next_frame()  # Socket.IO connect
            server.process.send_signal(signal.SIGTERM)
            if name in SOCKETIO_SERVERS:
                # Engine.IO's close packet; a Socket.IO client closes the WebSocket on it.
                last_frame = await listener.next_frame()
                transport.send_close(WSCloseCode.OK)
            await wait_closed_by_server(transport)
            if name in RAW_SERVERS:
                assert listener.close_code is WSCloseCode.GOING_AWAY
            return last_frame

    last_frame = asyncio.run(scenario())
    if name in SOCKETIO_SERVERS:
        assert last_frame == (WSMsgType.TEXT, b"1")
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_stops_cleanly_just_after_many_clients_leave(
    server_process: Callable[[str, str], ServerProcess], name: str
) -> None:
    """What the harness does after a run. engineio 4.15's close() can wait for ever on a session
    that is ending at that moment; on a busy machine that hung the Socket.IO servers' stop (it
    needs load to show, so on an idle machine this passes with or without the bound on it)."""
    server = server_process(name, "uvloop")

    async def scenario() -> None:
        transports = []
        for _ in range(CLIENTS_LEAVING):
            transport, listener = await asyncio.wait_for(
                picows.ws_connect(
                    FrameRecorder, f"ws://127.0.0.1:{server.port}{server_path(name)}"
                ),
                NETWORK_TIMEOUT_S,
            )
            assert isinstance(listener, FrameRecorder)
            if name in SOCKETIO_SERVERS:
                await listener.next_frame()  # Engine.IO open: the session exists
            transports.append(transport)
        for transport in transports:
            transport.disconnect()
        server.process.send_signal(signal.SIGTERM)

    asyncio.run(scenario())
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0


# --- Raw WebSocket echo ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", RAW_SERVERS)
def test_raw_server_echoes_text_as_text_and_binary_as_binary(
    start_server: Callable[[str, str], int], name: str, loop: str
) -> None:
    port = start_server(name, loop)
    text = "héllo, wörld ✓".encode()

    async def scenario() -> list[Frame]:
        async with connect(port, RAW_PATH) as (transport, listener):
            transport.send(WSMsgType.TEXT, text)
            transport.send(WSMsgType.BINARY, BINARY_PAYLOAD)
            transport.send(WSMsgType.TEXT, b"")
            return [await listener.next_frame() for _ in range(3)]

    assert asyncio.run(scenario()) == [
        (WSMsgType.TEXT, text),
        (WSMsgType.BINARY, BINARY_PAYLOAD),
        (WSMsgType.TEXT, b""),
    ]


# aiohttp 3.14.5 refuses a message whose size *equals* max_msg_size (its frame reader tests
# `payload_bytes_to_read >= max_msg_size`), so its real limit is one byte below the contract's.
# Recorded, not patched over: one byte does not matter to any scenario, and engineio's aiohttp
# driver passes the limit on unchanged. Strict xfail: this fails the day aiohttp changes it.
AIOHTTP_LIMIT_OFF_BY_ONE = pytest.mark.xfail(
    raises=ConnectionError, reason="aiohttp refuses a message of exactly max_msg_size bytes"
)


@pytest.mark.parametrize(
    "name", ["websockets", pytest.param("aiohttp", marks=AIOHTTP_LIMIT_OFF_BY_ONE)]
)
def test_raw_server_echoes_a_message_of_exactly_the_size_limit(
    start_server: Callable[[str, str], int], name: str
) -> None:
    port = start_server(name, "uvloop")
    message = b"x" * FAIRNESS.max_message_bytes

    async def scenario() -> Frame:
        async with connect(port, RAW_PATH) as (transport, listener):
            transport.send(WSMsgType.TEXT, message)
            return await listener.next_frame()

    assert asyncio.run(scenario()) == (WSMsgType.TEXT, message)


# --- The fairness contract -------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", ALL_SERVERS)
def test_server_refuses_permessage_deflate_when_offered(
    start_server: Callable[[str, str], int], name: str, loop: str
) -> None:
    port = start_server(name, loop)
    assert asyncio.run(offered_deflate_reply(port, server_path(name))) is None


def test_deflate_probe_sees_compression_negotiated_by_a_default_aiohttp_server() -> None:
    """The probe above can fail: aiohttp with default settings does accept the offer."""

    async def default_websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # library defaults, compression included
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def scenario() -> str | None:
        app = web.Application()
        app.router.add_get("/", default_websocket)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            return await offered_deflate_reply(port, "/")
        finally:
            await asyncio.wait_for(runner.cleanup(), NETWORK_TIMEOUT_S)

    reply = asyncio.run(scenario())
    assert reply is not None
    assert reply.startswith("permessage-deflate")


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_server_closes_connection_on_a_message_over_the_size_limit(
    start_server: Callable[[str, str], int], name: str
) -> None:
    port = start_server(name, "uvloop")

    async def scenario() -> WSCloseCode | None:
        async with connect(port, server_path(name)) as (transport, listener):
            if name in SOCKETIO_SERVERS:
                await listener.next_frame()  # Engine.IO open
            # Only the header that announces the oversized payload: every server refuses on the
            # announced length. Sending the whole payload raced with the server's close: the
            # server closes with unread bytes, its kernel answers with a reset, and the reset
            # can discard the 1009 close frame before the client reads it.
            transport.underlying_transport.write(
                oversized_text_frame_header(FAIRNESS.max_message_bytes + 1)
            )
            await wait_closed_by_server(transport)
            return listener.close_code

    assert asyncio.run(scenario()) is WSCloseCode.MESSAGE_TOO_BIG


# --- Socket.IO on the wire -------------------------------------------------------------------


@asynccontextmanager
async def socketio_session(
    port: int,
) -> AsyncIterator[tuple[picows.WSTransport, FrameRecorder, dict[str, Any]]]:
    """Engine.IO open, then Socket.IO connect to the default namespace; yields the open packet."""
    async with connect(port, SOCKETIO_PATH) as (transport, listener):
        kind, packet = await listener.next_frame()
        assert kind is WSMsgType.TEXT
        assert packet.startswith(b"0")  # Engine.IO OPEN
        handshake = json.loads(packet[1:])
        transport.send(WSMsgType.TEXT, b"40")  # Socket.IO CONNECT, namespace "/"
        kind, packet = await listener.next_frame()
        assert kind is WSMsgType.TEXT
        assert packet.startswith(b"40")
        assert isinstance(json.loads(packet[2:])["sid"], str)
        yield transport, listener, handshake


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_socketio_handshake_carries_the_contract(
    start_server: Callable[[str, str], int], name: str, loop: str
) -> None:
    port = start_server(name, loop)

    async def scenario() -> dict[str, Any]:
        async with socketio_session(port) as (_, _, handshake):
            return handshake

    handshake = asyncio.run(scenario())
    assert isinstance(handshake["sid"], str)
    assert handshake["upgrades"] == []  # WebSocket only: nothing to upgrade to
    assert handshake["pingInterval"] == FAIRNESS.engineio_ping_interval_s * 1000 == 3_600_000
    assert handshake["pingTimeout"] == FAIRNESS.engineio_ping_timeout_s * 1000
    assert handshake["maxPayload"] == FAIRNESS.max_message_bytes == 1_048_576


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_socketio_echo_emits_back_and_acks_only_when_asked(
    start_server: Callable[[str, str], int], name: str, loop: str
) -> None:
    port = start_server(name, loop)

    async def scenario() -> list[Frame]:
        async with socketio_session(port) as (transport, listener, _):
            transport.send(WSMsgType.TEXT, b'42["echo","hello"]')
            replies = [await listener.next_frame()]
            # Ack id 1: the reply is the ack, and no echo event. Were there an echo too, the
            # handler would emit it before returning, so it would arrive before the ack.
            transport.send(WSMsgType.TEXT, b'421["echo","hello"]')
            replies.append(await listener.next_frame())
            transport.send(WSMsgType.TEXT, b'42["echo","after"]')
            replies.append(await listener.next_frame())
            return replies

    assert asyncio.run(scenario()) == [
        (WSMsgType.TEXT, b'42["echo","hello"]'),
        (WSMsgType.TEXT, b'431["hello"]'),
        (WSMsgType.TEXT, b'42["echo","after"]'),
    ]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_socketio_binary_echo_is_a_placeholder_packet_plus_one_attachment(
    start_server: Callable[[str, str], int], name: str, loop: str
) -> None:
    port = start_server(name, loop)

    async def scenario() -> list[Frame]:
        async with socketio_session(port) as (transport, listener, _):
            # BINARY_EVENT with one attachment: the JSON holds a placeholder, the bytes follow
            # in a WebSocket binary frame of their own (no Engine.IO type prefix in v4).
            transport.send(WSMsgType.TEXT, b'451-["echo",{"_placeholder":true,"num":0}]')
            transport.send(WSMsgType.BINARY, BINARY_PAYLOAD)
            replies = [await listener.next_frame(), await listener.next_frame()]
            # The same with ack id 7: the reply is a BINARY_ACK.
            transport.send(WSMsgType.TEXT, b'451-7["echo",{"_placeholder":true,"num":0}]')
            transport.send(WSMsgType.BINARY, BINARY_PAYLOAD)
            replies += [await listener.next_frame(), await listener.next_frame()]
            return replies

    assert asyncio.run(scenario()) == [
        (WSMsgType.TEXT, b'451-["echo",{"_placeholder":true,"num":0}]'),
        (WSMsgType.BINARY, BINARY_PAYLOAD),
        (WSMsgType.TEXT, b'461-7[{"_placeholder":true,"num":0}]'),
        (WSMsgType.BINARY, BINARY_PAYLOAD),
    ]


@pytest.mark.parametrize(
    "name", [pytest.param("socketio_aiohttp", marks=AIOHTTP_LIMIT_OFF_BY_ONE), "socketio_asgi"]
)
def test_socketio_echoes_an_event_of_exactly_the_size_limit(
    start_server: Callable[[str, str], int], name: str
) -> None:
    port = start_server(name, "uvloop")
    envelope = b'42["echo",""]'
    packet = b'42["echo","' + b"x" * (FAIRNESS.max_message_bytes - len(envelope)) + b'"]'
    assert len(packet) == FAIRNESS.max_message_bytes

    async def scenario() -> Frame:
        async with socketio_session(port) as (transport, listener, _):
            transport.send(WSMsgType.TEXT, packet)
            return await listener.next_frame()

    assert asyncio.run(scenario()) == (WSMsgType.TEXT, packet)


@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_socketio_server_refuses_the_polling_transport(
    start_server: Callable[[str, str], int], name: str
) -> None:
    port = start_server(name, "uvloop")

    async def scenario() -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://127.0.0.1:{port}{POLLING_PATH}") as response,
        ):
            return response.status, await response.read()

    assert asyncio.run(scenario()) == (400, b'"Invalid transport"')


@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_socketio_server_serves_polling_when_asked(
    start_server: Callable[..., int], name: str
) -> None:
    port = start_server(name, "uvloop", "--transports", "polling")

    async def scenario() -> tuple[int, str, int]:
        timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"http://127.0.0.1:{port}{POLLING_PATH}") as response:
                polling = response.status, await response.text()
            websocket = await session.get(f"http://127.0.0.1:{port}{SOCKETIO_PATH}")
            websocket.release()
            return polling[0], polling[1], websocket.status

    status, body, websocket_status = asyncio.run(scenario())
    assert status == 200 and body.startswith("0{")
    assert json.loads(body[1:])["upgrades"] == []  # polling only: no upgrade offered
    assert websocket_status == 400  # and the WebSocket transport refused


@pytest.mark.parametrize("name", RAW_SERVERS)
def test_raw_server_refuses_another_transport_with_one_line(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"servers.{name}", "--port", "0", "--transports", "polling"],
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --transports: a raw WebSocket server has only 'websocket'"
    ]


def test_fixture_reports_a_server_that_never_becomes_ready() -> None:
    """The READY reader fails loudly instead of hanging when a server dies at start."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(3)"], stdout=subprocess.PIPE
    )
    try:
        with pytest.raises(RuntimeError, match="exited with 3 before READY"):
            read_ready_port(process, 10.0 * TIME_FACTOR)
    finally:
        stop_process(process)


def test_a_self_bound_listening_socket_gives_asyncio_connections_tcp_nodelay() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; socket.
    # create_server's are 0, which left socketio-asgi on asyncio waiting 40 ms for delayed
    # ACKs whenever a reply took two writes (binary Socket.IO, long-polling).
    async def main() -> tuple[int, int]:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        listening = listening_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        try:
            port = listening.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            nodelay = await asyncio.wait_for(accepted, 5)
            writer.close()
        finally:
            server.close()
        return listening.proto, nodelay

    proto, nodelay = asyncio.run(main())  # the standard loop, where it matters
    assert proto == socket.IPPROTO_TCP and nodelay != 0


# --- Memory allocator (the contract's malloc thresholds) ----------------------------------------

ECHOES_FOR_FAULTS = 1000


def minor_page_faults(pid: int) -> int:
    """The process's minor page faults so far (field 10 of /proc/PID/stat, after the name)."""
    with open(f"/proc/{pid}/stat") as stream:
        return int(stream.read().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("name", ALL_SERVERS)
def test_server_on_asyncio_reads_messages_without_fresh_pages(
    server_process: Callable[..., ServerProcess], name: str
) -> None:
    """asyncio reads each message into a fresh 256 KiB buffer. Were glibc serving that with mmap
    (its state in a fresh process, before the contract's thresholds), every message would touch
    at least one fresh page: a page fault each (two, measured). Settled, the buffer comes from
    the heap and the faults stay far below one a message."""
    server = server_process(name, "asyncio")
    frame = b'42["echo","x"]' if name in SOCKETIO_SERVERS else b"x"

    async def scenario() -> int:
        session = socketio_session(server.port) if name in SOCKETIO_SERVERS else None
        async with session or connect(server.port, RAW_PATH) as opened:
            transport, listener = opened[0], opened[1]
            for _ in range(20):  # connection set-up and first-use allocations settle
                transport.send(WSMsgType.TEXT, frame)
                await listener.next_frame()
            before = minor_page_faults(server.process.pid)
            for _ in range(ECHOES_FOR_FAULTS):
                transport.send(WSMsgType.TEXT, frame)
                assert await listener.next_frame() == (WSMsgType.TEXT, frame)
            return minor_page_faults(server.process.pid) - before

    assert asyncio.run(scenario()) < ECHOES_FOR_FAULTS // 4
