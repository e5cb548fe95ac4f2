"""Micro-benchmarks, no network: packet encoding and decoding (python-socketio's and the
generator's), the generator's framing, latency recording and pacing alarm, and each server's
per-message handler with its I/O stubbed.

`make micro` runs them with timing on and compares them with the saved baseline
(tests/micro/baseline/), failing when one has slowed beyond the threshold
(``--benchmark-compare-fail``). Under `make test` timing is off and each runs once, as a test
that the benchmarked code still works.

``WSBENCH_MICRO_SLOW_ENCODE_US``: the generator's encode burns that many extra microseconds a
call. Only the test that proves the gate catches a slowed encode sets it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvloop
from aiohttp import WSMessage, WSMsgType
from engineio import packet as engineio_packet
from socketio import packet as socketio_packet

from bench.load.alarm import Alarm
from bench.load.recorder import LatencyRecorder
from bench.protocol.exchange import Exchange, FrameBuilder
from bench.protocol.socketio import SocketIOPacket, decode_packet, encode_packet
from servers import aiohttp as aiohttp_server
from servers import websockets as websockets_server
from servers.socketio_common import create_socketio_server

PAYLOAD = "x" * 32
MESSAGES_PER_CALL = 1_000
_SLOW_ENCODE_NS = int(float(os.environ.get("WSBENCH_MICRO_SLOW_ENCODE_US", "0")) * 1000)


def _spin(duration_ns: int) -> None:
    deadline = time.perf_counter_ns() + duration_ns
    while time.perf_counter_ns() < deadline:
        pass


def generator_encode(packet: SocketIOPacket) -> str:
    if _SLOW_ENCODE_NS:
        _spin(_SLOW_ENCODE_NS)
    return encode_packet(packet)


EVENT = SocketIOPacket(packet_type=2, namespace="/", data=["echo", PAYLOAD])
ENCODED_EVENT = encode_packet(EVENT)


# --- Packets ---------------------------------------------------------------------------------


def test_generator_socketio_encode(benchmark: Any) -> None:
    assert benchmark(generator_encode, EVENT) == ENCODED_EVENT


def test_generator_socketio_decode(benchmark: Any) -> None:
    assert benchmark(decode_packet, ENCODED_EVENT) == EVENT


def test_python_socketio_encode(benchmark: Any) -> None:
    def encode() -> Any:
        return socketio_packet.Packet(socketio_packet.EVENT, data=["echo", PAYLOAD]).encode()

    assert benchmark(encode) == ENCODED_EVENT[1:]  # python-socketio leaves out Engine.IO's '4'


def test_python_socketio_decode(benchmark: Any) -> None:
    def decode() -> Any:
        return socketio_packet.Packet(encoded_packet=ENCODED_EVENT[1:]).data

    assert benchmark(decode) == ["echo", PAYLOAD]


def test_python_engineio_encode_and_decode(benchmark: Any) -> None:
    def round_trip() -> Any:
        encoded = engineio_packet.Packet(engineio_packet.MESSAGE, data=ENCODED_EVENT[1:]).encode()
        return engineio_packet.Packet(encoded_packet=encoded).data

    assert benchmark(round_trip) == ENCODED_EVENT[1:]


# --- The generator's hot path ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["raw", "socketio"])
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_generator_framing(benchmark: Any, protocol: str, kind: str) -> None:
    exchange = Exchange(protocol, kind, 32)  # type: ignore[arg-type]
    frames = FrameBuilder(exchange).frames

    def build() -> Any:
        return frames(12345, 1_700_000_000_000_000_000)

    assert benchmark(build) == exchange.frames(12345, 1_700_000_000_000_000_000)


def test_generator_latency_recording(benchmark: Any) -> None:
    values_ns = [1_000 + (i * 7919) % 5_000_000 for i in range(MESSAGES_PER_CALL)]

    def record() -> int:
        recorder = LatencyRecorder()
        for value in values_ns:
            recorder.append(value)
        recorder.flush()
        return int(recorder.histogram.get_total_count())

    assert benchmark(record) == MESSAGES_PER_CALL


def test_alarm_sleep_of_0_2_ms(benchmark: Any) -> None:
    """The open loop's pacing: a sleep of 0.2 ms plus how late the alarm wakes (within
    microseconds on a timerfd; the loop's own timers would add about a millisecond)."""
    loop = uvloop.new_event_loop()

    async def make_alarm() -> Alarm:
        return Alarm()

    alarm = loop.run_until_complete(make_alarm())

    def sleep() -> int:
        due = time.monotonic_ns() + 200_000
        loop.run_until_complete(alarm.sleep_until(due))
        return time.monotonic_ns() - due

    try:
        assert alarm.precise
        assert benchmark(sleep) >= 0
    finally:
        alarm.close()
        loop.close()


# --- The servers' per-message paths, I/O stubbed ---------------------------------------------


class StubWebsocketsConnection:
    """What websockets' echo handler touches: iteration over messages and send()."""

    def __init__(self, messages: int) -> None:
        self.remaining = messages
        self.sent = 0

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if not self.remaining:
            raise StopAsyncIteration
        self.remaining -= 1
        return PAYLOAD

    async def send(self, message: str) -> None:
        self.sent += 1


class StubAiohttpResponse(StubWebsocketsConnection):
    async def __anext__(self) -> WSMessage:  # type: ignore[override]
        await super().__anext__()
        return WSMessage(WSMsgType.TEXT, PAYLOAD, None)

    async def send_str(self, data: str) -> None:
        self.sent += 1


def run_on_a_loop(step: Callable[[], Any]) -> Callable[[], Any]:
    loop = asyncio.new_event_loop()

    def call() -> Any:
        return loop.run_until_complete(step())

    call.loop = loop  # type: ignore[attr-defined]
    return call


def test_websockets_server_echo_path(benchmark: Any) -> None:
    async def echo_batch() -> int:
        connection = StubWebsocketsConnection(MESSAGES_PER_CALL)
        await websockets_server.echo(connection)  # type: ignore[arg-type]
        return connection.sent

    call = run_on_a_loop(echo_batch)
    try:
        assert benchmark(call) == MESSAGES_PER_CALL
    finally:
        call.loop.close()  # type: ignore[attr-defined]


def test_aiohttp_server_echo_path(benchmark: Any) -> None:
    async def echo_batch() -> int:
        ws = StubAiohttpResponse(MESSAGES_PER_CALL)
        for _ in range(MESSAGES_PER_CALL):
            message = await ws.__anext__()
            await aiohttp_server.send(ws, message)  # type: ignore[arg-type]
        return ws.sent

    call = run_on_a_loop(echo_batch)
    try:
        assert benchmark(call) == MESSAGES_PER_CALL
    finally:
        call.loop.close()  # type: ignore[attr-defined]


def test_socketio_server_event_path(benchmark: Any) -> None:
    """python-socketio's event dispatch and the echo handler, with the emit stubbed out."""
    sio = create_socketio_server("aiohttp")
    emitted: list[Any] = []

    async def stub_emit(event: str, data: Any = None, **kwargs: Any) -> None:
        emitted.append(data)

    sio.emit = stub_emit  # type: ignore[method-assign]

    async def dispatch_batch() -> int:
        emitted.clear()
        for _ in range(MESSAGES_PER_CALL):
            await sio._trigger_event("echo", "/", "sid", PAYLOAD)
        return len(emitted)

    call = run_on_a_loop(dispatch_batch)
    try:
        assert benchmark(call) == MESSAGES_PER_CALL
    finally:
        call.loop.close()  # type: ignore[attr-defined]
