"""The generator's per-message path without a network (issue 17, item 5): build a message,
record it as outstanding, send it, then verify its echo as it arrives and match it to its send
time, through the connection's own methods (``EchoConnection.send`` and ``.on_ws_frame``).

The transport is a stub that drops what it is given (picows's own copy and mask cost the same
whichever way the connection builds and verifies messages). The echoes are real picows frames
(``picows._make_test_ws_frame``, picows's helper for its own tests), so reading a payload costs
what it costs in a run. Each call sends and verifies a batch of ``count`` messages (about
``BATCH_BYTES`` of payload, at least ``MIN_MESSAGES``): `make micro` reports the time per batch;
per message is that over ``extra_info["messages"]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from bench.load.client import EchoConnection, Tally
from bench.protocol.exchange import Exchange

SIZES = {"32B": 32, "16KiB": 16 * 1024, "256KiB": 256 * 1024}
SHAPES = {
    "raw-text": ("raw", "text", False),
    "raw-binary": ("raw", "binary", False),
    "socketio-text": ("socketio", "text", False),
    "socketio-text-ack": ("socketio", "text", True),
    "socketio-binary": ("socketio", "binary", False),
}
BATCH_BYTES = 4 * 1024 * 1024
MIN_MESSAGES = 16
MAX_MESSAGES = 1_000
FIRST_NS = 1_700_000_000_000_000_000


class DroppingTransport:
    """What the connection's send path touches of a picows transport."""

    def send(self, msg_type: WSMsgType, data: bytes) -> None:
        pass


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_generator_send_and_verify(
    benchmark: Any, loop: asyncio.AbstractEventLoop, shape: str, size: str
) -> None:
    protocol, kind, ack = SHAPES[shape]
    exchange = Exchange(protocol, kind, SIZES[size], ack=ack)  # type: ignore[arg-type]
    count = max(MIN_MESSAGES, min(MAX_MESSAGES, BATCH_BYTES // exchange.payload_bytes))
    body_type = WSMsgType.BINARY if kind == "binary" else WSMsgType.TEXT

    async def make() -> EchoConnection:  # its ``ready`` future needs a running loop
        return EchoConnection(exchange, Tally(), closed_loop=False)

    connection = loop.run_until_complete(make())
    transport = DroppingTransport()
    connection.transport = transport  # type: ignore[assignment]
    connection.handshake_step = 2
    connection.start_window(0, 2**62)
    times_ns = [FIRST_NS + seq * 1_000 for seq in range(count)]
    echoes = []
    for seq, t_ns in enumerate(times_ns):
        reply_preamble = exchange.expected_reply_preamble(seq)
        reply = exchange.frames(seq, t_ns)[2]
        frames = [] if reply_preamble is None else [(WSMsgType.TEXT, reply_preamble)]
        frames.append((body_type, reply))
        echoes.append([_make_test_ws_frame(t, data, True, False) for t, data in frames])
    on_frame = connection.on_ws_frame

    def send_and_verify_batch() -> int:
        connection.next_seq = connection.received = 0  # the echoes are of messages 0 to count-1
        for t_ns, frames in zip(times_ns, echoes, strict=True):
            connection.send(t_ns)
            for frame in frames:
                on_frame(transport, frame)  # type: ignore[arg-type]
        return connection.received

    benchmark.extra_info["messages"] = count
    assert benchmark(send_and_verify_batch) == count
    assert not connection.outstanding and connection.unexpected == 0
