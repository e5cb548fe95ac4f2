from __future__ import annotations

import itertools
import json

import pytest

from bench.protocol import socketio as sio
from bench.protocol.exchange import (
    HEADER_BYTES,
    MIN_JSON_PAYLOAD_BYTES,
    Exchange,
    FrameBuilder,
    parse_header,
    payload,
)

SHAPES = [
    ("raw", "text", False),
    ("raw", "binary", False),
    ("raw", "text", True),
    ("socketio", "text", False),
    ("socketio", "text", True),
    ("socketio", "binary", False),
    ("socketio", "binary", True),
    ("raw", "json", False),
    ("socketio", "json", False),
    ("socketio", "json", True),
]
# Each shape at its smallest payload, one byte more and a large one.
CASES = [
    (protocol, kind, ack, size)
    for protocol, kind, ack in SHAPES
    for size in ([MIN_JSON_PAYLOAD_BYTES, 53, 1000] if kind == "json" else [24, 32, 1000])
]


@pytest.mark.parametrize(("protocol", "kind", "ack", "size"), CASES)
def test_fast_builder_equals_reference(protocol: str, kind: str, ack: bool, size: int) -> None:
    exchange = Exchange(protocol, kind, size, ack=ack)  # type: ignore[arg-type]
    builder = FrameBuilder(exchange)
    for seq, t_ns in itertools.product([0, 1, 99, 2**32 + 5], [0, 123_456_789_012]):
        assert builder.frames(seq, t_ns) == exchange.frames(seq, t_ns)


@pytest.mark.parametrize(("protocol", "kind", "ack", "size"), CASES)
def test_reply_is_its_head_then_the_exchange_s_constant_tail(
    protocol: str, kind: str, ack: bool, size: int
) -> None:
    exchange = Exchange(protocol, kind, size, ack=ack)  # type: ignore[arg-type]
    builder = FrameBuilder(exchange)
    for seq, t_ns in itertools.product([0, 1, 99, 2**32 + 5], [0, 123_456_789_012]):
        _, body, reply = exchange.frames(seq, t_ns)
        sent, head = builder.body_and_head(seq, t_ns)
        assert (sent, head + builder.reply_tail) == (body, reply)
        assert len(head) >= HEADER_BYTES
        reply_preamble = None if builder.reply_preamble is None else builder.reply_preamble(seq)
        assert reply_preamble == exchange.expected_reply_preamble(seq)


def test_payload_header_round_trip_and_size() -> None:
    body = payload(42, 987_654_321, "text", 32)
    assert len(body) == 32
    assert parse_header(body) == (42, 987_654_321)
    assert body[HEADER_BYTES:].isalpha()
    binary = payload(1, 2, "binary", 300)
    assert len(binary) == 300 and set(binary[HEADER_BYTES:]) == set(range(256))


def test_socketio_text_frames_are_what_python_socketio_encodes() -> None:
    exchange = Exchange("socketio", "text", 40)
    preamble, sent, expected = exchange.frames(5, 77)
    text = payload(5, 77, "text", 40).decode()
    assert preamble is None
    assert sent.decode() == sio.encode_packet(sio.SocketIOPacket(2, data=["echo", text]))
    assert expected == sent  # the server's echo event is byte-identical


def test_socketio_ack_reply_is_an_ack_packet() -> None:
    exchange = Exchange("socketio", "text", 40, ack=True)
    _, sent, expected = exchange.frames(9, 77)
    text = payload(9, 77, "text", 40).decode()
    assert json.loads(sent[3:]) == ["echo", text] and sent.startswith(b"429[")
    assert expected.decode() == sio.encode_packet(sio.SocketIOPacket(3, ack_id=9, data=[text]))


def test_socketio_binary_needs_placeholder_frames() -> None:
    exchange = Exchange("socketio", "binary", 64)
    preamble, body, expected = exchange.frames(3, 5)
    assert preamble == sio.EventFraming("echo").binary_emit_placeholder().encode()
    assert body == expected == payload(3, 5, "binary", 64)
    assert exchange.frames_per_message == 2
    assert exchange.expected_reply_preamble(3) == preamble


def test_every_message_is_unique() -> None:
    builder = FrameBuilder(Exchange("raw", "text", 32))
    expected = {builder.frames(seq, 1000)[2] for seq in range(10_000)}
    assert len(expected) == 10_000


def test_rejects_small_payload() -> None:
    with pytest.raises(ValueError, match="minimum"):
        Exchange("raw", "text", HEADER_BYTES - 1)


def test_raw_request_response_is_matched_by_the_id_every_message_carries() -> None:
    plain, acked = Exchange("raw", "binary", 64), Exchange("raw", "binary", 64, ack=True)
    assert plain.frames(41, 7) == acked.frames(41, 7)
    _, body, reply = acked.frames(41, 7)
    assert parse_header(reply) == (41, 7) and reply == body


@pytest.mark.parametrize("size", [MIN_JSON_PAYLOAD_BYTES, 53, 200, 512, 4096, 65536])
def test_json_payload_is_a_compact_chat_object_of_the_exact_size(size: int) -> None:
    body = payload(7, 123_456_789, "json", size)
    assert len(body) == size
    assert parse_header(body) == (7, 123_456_789)
    decoded = json.loads(body)
    # Re-encoded as python-socketio and Node encode an echo, it is the same bytes.
    assert json.dumps(decoded, separators=(",", ":")).encode() == body
    assert decoded["id"] == body[7 : 7 + HEADER_BYTES].decode()
    for message in decoded["msgs"]:
        assert set(message) == {"user", "room", "text", "ts", "likes"}
    if size >= 512:
        # Mostly messages, not padding: compression has real text to work on.
        assert len(decoded["pad"]) < 200 and len(decoded["msgs"]) >= 2


def test_json_payload_is_the_same_object_for_every_message_but_its_id() -> None:
    first, second = payload(1, 10, "json", 700), payload(2, 20, "json", 700)
    assert json.loads(first)["msgs"] == json.loads(second)["msgs"]
    assert first != second


def test_socketio_json_travels_as_the_object_not_a_string() -> None:
    exchange = Exchange("socketio", "json", 300)
    _, sent, expected = exchange.frames(3, 4)
    body = payload(3, 4, "json", 300)
    assert sent.decode() == sio.encode_packet(
        sio.SocketIOPacket(2, data=["echo", json.loads(body)])
    )
    assert expected == sent
    _, sent, reply = Exchange("socketio", "json", 300, ack=True).frames(3, 4)
    assert sent.startswith(b"423[") and reply == b"433[" + body + b"]"


def test_rejects_a_json_payload_below_the_smallest_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        Exchange("raw", "json", MIN_JSON_PAYLOAD_BYTES - 1)
