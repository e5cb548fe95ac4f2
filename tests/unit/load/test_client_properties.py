"""Hostile or broken servers against the generator's echo verification (issue 8, item 5).

What a server sends back is fed, without a network, to the two places where the generator
reads it: a picows connection's frame callback (``EchoConnection.on_ws_frame``: raw WebSocket
and Socket.IO, handshake included) and a long-polling connection's packet handler
(``PollingConnection._handle``). Frames are exact echoes, duplicates, mutated echoes, random
bytes and Engine.IO control packets. Nothing may raise; every frame is either a verified echo
counted once, a control frame, or an error, so that each connection keeps
``sent = received + outstanding`` (outstanding becomes ``missing`` after the drain), Socket.IO
binary echoes rejected for a wrong placeholder being counted as errors instead.
Property-based (hypothesis), 1,000 examples per property (fewer under `make test-unit`:
tests.conftest.PROPERTY_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picows import WSMsgType

from bench.load.client import HEAD_KEY_MIN_BYTES, EchoConnection, Tally
from bench.load.plan import WorkerPlan
from bench.load.polling_worker import PollingConnection, encode_event
from bench.protocol import socketio as sio
from bench.protocol.exchange import HEADER_BYTES, Exchange
from tests.conftest import PROPERTY_EXAMPLES

# No example database: nothing is written into the work tree.
EXAMPLES = settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None)
WINDOW_END_NS = 2**62
# Engine.IO packets a server may send at any time, and a few it should not send then.
CONTROL_TEXTS = [b"2", b"3", b"6", b"1", b"40", b'40{"sid":"x"}', b"2probe", b"3probe", b"0{}"]


@dataclass(frozen=True)
class FakeFrame:
    msg_type: WSMsgType
    payload: bytes

    def get_payload_as_bytes(self) -> bytes:
        return self.payload

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self.payload)


class FakeTransport:
    """Records what the connection sends (its pongs, its closed-loop messages)."""

    def __init__(self) -> None:
        self.sent: list[tuple[WSMsgType, bytes]] = []

    def send(self, msg_type: WSMsgType, data: bytes) -> None:
        self.sent.append((msg_type, bytes(data)))

    def send_close(self, *args: Any) -> None:
        pass

    def disconnect(self, *args: Any) -> None:
        pass


_loop: asyncio.AbstractEventLoop | None = None


@pytest.fixture(scope="module", autouse=True)
def event_loop_for_module() -> Iterator[None]:
    global _loop
    _loop = asyncio.new_event_loop()
    yield
    _loop.close()
    _loop = None


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    assert _loop is not None
    return _loop.run_until_complete(coroutine)


def mutated(data: bytes, seed: int) -> bytes:
    """``data`` with one to three bytes flipped, deleted, inserted, or cut off (by ``seed``:
    hypothesis draws plain integers, which is much cheaper than drawing each edit)."""
    rng = random.Random(seed)
    edited = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(edited) + 1)
        operation = rng.randrange(4)
        if operation == 0 and at < len(edited):
            edited[at] ^= rng.randrange(1, 256)
        elif operation == 1:
            del edited[at : at + 1]
        elif operation == 2:
            edited[at:at] = rng.randbytes(rng.randint(1, 3))
        else:
            del edited[at:]
    return bytes(edited)


def payload(source: int, index: int, seed: int, known: list[bytes], others: list[bytes]) -> bytes:
    """Source 0: a known frame (drawn again: a duplicate); 1: a known frame mutated; 2: one of
    ``others`` (control packets); 3: one of them mutated; 4: random bytes."""
    if source == 0:
        return known[index % len(known)]
    if source == 1:
        return mutated(known[index % len(known)], seed)
    if source == 2:
        return others[index % len(others)]
    if source == 3:
        return mutated(others[index % len(others)], seed)
    return random.Random(seed).randbytes(index % 80)


# Mostly data frames; every WebSocket frame type appears.
FRAME_TYPES = [WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.BINARY,
               WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE, WSMsgType.CONTINUATION]  # fmt: skip
# (frame type, source, index, seed) per frame: see ``payload``.
frame_specs = st.lists(
    st.tuples(st.integers(0, len(FRAME_TYPES) - 1), st.integers(0, 4), st.integers(0, 255),
              st.integers(0, 2**32 - 1)),
    max_size=20,
)  # fmt: skip
Specs = list[tuple[int, int, int, int]]


def build_frames(
    specs: Specs, known: list[bytes], others: list[bytes], types: list[WSMsgType] = FRAME_TYPES
) -> list[FakeFrame]:
    return [
        FakeFrame(types[kind % len(types)], payload(source, index, seed, known, others))
        for kind, source, index, seed in specs
    ]


def open_connection(
    exchange: Exchange, closed_loop: bool, handshake_step: int = 2
) -> tuple[EchoConnection, FakeTransport]:
    async def make() -> EchoConnection:  # its ``ready`` future needs a running loop
        return EchoConnection(exchange, Tally(), closed_loop, upgrade=handshake_step == -1)

    connection: EchoConnection = run(make())
    transport = FakeTransport()
    connection.transport = transport  # type: ignore[assignment]
    connection.handshake_step = handshake_step if exchange.protocol == "socketio" else 2
    connection.start_window(0, WINDOW_END_NS)
    return connection, transport


exchanges = st.builds(
    Exchange,
    st.sampled_from(["raw", "socketio"]),
    st.sampled_from(["text", "binary"]),
    # Small payloads are keyed by the whole reply, large ones by its head (and their tail
    # compared): both ways.
    st.one_of(st.integers(24, 64), st.integers(HEAD_KEY_MIN_BYTES, HEAD_KEY_MIN_BYTES + 40)),
    st.booleans(),
)


@EXAMPLES
@given(exchange=exchanges, messages=st.integers(1, 8), closed_loop=st.booleans(), specs=frame_specs)
def test_every_frame_is_an_echo_a_control_frame_or_an_error(
    exchange: Exchange, messages: int, closed_loop: bool, specs: Specs
) -> None:
    connection, transport = open_connection(exchange, closed_loop)
    for t_ns in range(1, messages + 1):
        connection.send(t_ns)
    # The replies as the reference construction spells them, not as the connection keys them.
    expected = [exchange.frames(seq, t_ns)[2] for seq, t_ns in enumerate(range(1, messages + 1))]
    preambles = [exchange.expected_reply_preamble(seq) for seq in range(messages)]
    received = build_frames(specs, expected + [p for p in preambles if p is not None],
                            CONTROL_TEXTS)  # fmt: skip

    for frame in received:
        connection.on_ws_frame(transport, frame)  # type: ignore[arg-type]

    sent = messages + (connection.received if closed_loop else 0)
    assert connection.sent == connection.next_seq == sent
    rejected = connection.sent - connection.received - len(connection.outstanding)
    if exchange.expected_reply_preamble(0) is None:
        # No placeholder packets: the exact ledger.
        assert rejected == 0
        echoes, errors, pings = account(exchange, expected, received)
        assert (connection.received, connection.unexpected) == (echoes, errors)
        assert transport.sent.count((WSMsgType.TEXT, b"3")) == pings
    else:
        # Socket.IO binary: an attachment after a wrong placeholder is consumed as an error.
        assert 0 <= rejected <= connection.unexpected


def account(
    exchange: Exchange, expected: list[bytes], received: list[FakeFrame]
) -> tuple[int, int, int]:
    """What the frames must count as: echoes (each expected reply once), errors, and Engine.IO
    pings (each answered with a pong)."""
    waiting = set(expected)
    echoes = errors = pings = 0
    for frame in received:
        if frame.payload in waiting:
            waiting.remove(frame.payload)
            echoes += 1
        elif (
            exchange.protocol == "socketio"
            and frame.msg_type is WSMsgType.TEXT
            and (frame.payload in (b"2", b"6"))
        ):
            pings += frame.payload == b"2"
        elif frame.msg_type not in (WSMsgType.CLOSE, WSMsgType.PONG):
            errors += 1
    return echoes, errors, pings


HANDSHAKE_TEXTS = [
    b'0{"sid":"s","pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}',
    b'40{"sid":"t"}', b'44{"message":"refused"}', b"3probe", b"6", b"2",
]  # fmt: skip


@EXAMPLES
@given(start=st.sampled_from([-1, 0, 1]), specs=frame_specs)
def test_a_socketio_handshake_ends_ready_refused_or_waiting_never_raising(
    start: int, specs: Specs
) -> None:
    types = [WSMsgType.TEXT, WSMsgType.TEXT, WSMsgType.TEXT, WSMsgType.BINARY]
    received = build_frames(specs, HANDSHAKE_TEXTS, CONTROL_TEXTS, types)
    connection, transport = open_connection(
        Exchange("socketio", "text", 32), closed_loop=True, handshake_step=start
    )
    for frame in received:
        connection.on_ws_frame(transport, frame)  # type: ignore[arg-type]
    if connection.ready.done():
        failure = connection.ready.exception()
        assert failure is None or isinstance(failure, ConnectionError)
        if failure is None:
            assert connection.handshake_step == 2
    assert connection.sent == 0  # nothing is sent before the start signal


POLLING_PLAN = WorkerPlan(url="ws://127.0.0.1:9/", protocol="socketio", mode="closed",
                          connections=1, payload_bytes=32, payload_kind="text", warmup_s=0,
                          duration_s=1)  # fmt: skip


POLLING_CONTROLS = [b"2", b"3", b"6", b"1", b"40", b"4", b"42[]", b'42["echo",1]']


def polling_packet(source: int, index: int, seed: int, known: list[bytes]) -> str:
    """As ``payload``; source 5: an echo nested deeper than the JSON decoder's recursion
    limit."""
    if source == 5:
        return '42["echo",' + "[" * (index * 20) + "]"
    return payload(source, index, seed, known, POLLING_CONTROLS).decode(errors="replace")


@EXAMPLES
@given(
    messages=st.integers(1, 8),
    specs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 255), st.integers(0, 2**32 - 1)),
                   max_size=15),
)  # fmt: skip
def test_every_long_polling_packet_is_an_echo_a_control_packet_or_an_error(
    messages: int, specs: list[tuple[int, int, int]]
) -> None:
    async def scenario() -> tuple[PollingConnection, list[str]]:
        connection = PollingConnection(POLLING_PLAN, Tally(), None, None, "/")  # type: ignore[arg-type]
        connection.start_window(0, WINDOW_END_NS)
        for t_ns in range(1, messages + 1):
            await connection.send(t_ns)
        echoes = [encode_event(str(message)).encode() for message in connection.outstanding]
        packets = [polling_packet(*spec, echoes) for spec in specs]
        for packet in packets:
            await connection._handle(packet)
        return connection, packets

    connection, packets = run(scenario())
    controls = sum(packet in (sio.EIO_PING, sio.EIO_NOOP, sio.EIO_CLOSE) for packet in packets)
    # Each packet counted once: an echo, an error, or a control packet. (Which packets are
    # echoes is not modelled here: a mutation may give another spelling of the same JSON.)
    assert connection.received + connection.unexpected + controls == len(packets)
    assert connection.received <= messages
    # Closed loop: each echo sent the next message.
    assert connection.sent == messages + connection.received
    assert connection.sent == connection.received + len(connection.outstanding)
    assert connection.disconnected == (sio.EIO_CLOSE in packets)
    assert connection.pending.count(sio.EIO_PONG) == packets.count(sio.EIO_PING)


@pytest.mark.parametrize("size", [32, HEAD_KEY_MIN_BYTES, 256 * 1024])
@pytest.mark.parametrize(
    ("protocol", "kind", "ack"),
    [("raw", "text", False), ("raw", "binary", False), ("socketio", "text", False),
     ("socketio", "text", True), ("socketio", "binary", False), ("socketio", "binary", True)],
)  # fmt: skip
def test_an_altered_head_or_tail_duplicate_or_late_echo_is_caught_at_every_size(
    protocol: str, kind: str, ack: bool, size: int
) -> None:
    exchange = Exchange(protocol, kind, size, ack=ack)  # type: ignore[arg-type]
    connection, transport = open_connection(exchange, closed_loop=False)
    connection.send(1)
    connection.send(2)
    replies = [exchange.frames(seq, t_ns)[2] for seq, t_ns in [(0, 1), (1, 2)]]
    placeholders = [exchange.expected_reply_preamble(seq) for seq in (0, 1)]
    header_at = replies[0].index(b"%08x" % 0)
    bad_header = bytearray(replies[0])
    bad_header[header_at + HEADER_BYTES - 1] ^= 1  # the send time's last digit: still hex
    bad_tail = bytearray(replies[0])
    bad_tail[-1] ^= 1
    body_type = WSMsgType.BINARY if kind == "binary" else WSMsgType.TEXT
    # Message 1's echo twice, then message 0's altered twice, then its exact echo (late).
    for index, reply in [(1, replies[1]), (1, replies[1]), (0, bytes(bad_header)),
                         (0, bytes(bad_tail)), (0, replies[0])]:  # fmt: skip
        if placeholders[index] is not None:
            connection.on_ws_frame(transport, FakeFrame(WSMsgType.TEXT, placeholders[index]))  # type: ignore[arg-type]
        connection.on_ws_frame(transport, FakeFrame(body_type, reply))  # type: ignore[arg-type]
    # (received, errors, outstanding), as counted before echoes were keyed by their heads.
    # Socket.IO binary: the placeholder before each altered attachment is left over and the
    # next placeholder counted as an error; with acks, message 0's placeholder then mismatches
    # (the leftover is message 1's), so its exact echo is consumed as an error too.
    counts = {("socketio", "binary", False): (2, 6, 0), ("socketio", "binary", True): (1, 7, 0)}
    assert (connection.received, connection.unexpected, len(connection.outstanding)) == counts.get(
        (protocol, kind, ack), (2, 3, 0)
    )
    assert connection.frames_received == 5 * exchange.frames_per_message
