"""Hostile or broken Socket.IO servers (issue 8, item 5): the generator's Engine.IO/Socket.IO
decoders, fed random and mutated frames, either decode them or raise ``ProtocolError``, which
every caller turns into a failed handshake; never another exception, which would escape a
picows callback instead. Property-based (hypothesis), 1,000 examples per property (fewer under
`make test-unit`: tests.conftest.PROPERTY_EXAMPLES)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench.protocol import socketio as sio
from tests.conftest import PROPERTY_EXAMPLES

# No example database: nothing is written into the work tree.
EXAMPLES = settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None)

# Characters that matter to the decoders (packet digits, the binary dash, namespaces, JSON
# structure and numbers), digits that str.isdigit() accepts but int() refuses, and JSON's
# non-finite numbers; the rest of Unicode comes from st.text().
_TRICKY = [*'0123456789-/,{}[]":.eE+ \t\x1e', "²", "٣", "Infinity", "NaN", "-Infinity"]


def json_values(allow_nan: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON value, Infinity included; NaN too unless ``allow_nan`` is false (NaN != NaN)."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=allow_nan, allow_infinity=True)
        | st.text(max_size=6)
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=6,
    )


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A valid-looking frame with a few characters deleted, inserted, replaced, or cut off."""
    text = draw(base)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        piece = draw(st.sampled_from(_TRICKY) | st.text(min_size=1, max_size=3))
        operation = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "repeat"]))
        if operation == "delete":
            text = text[:at] + text[at + 1 :]
        elif operation == "insert":
            text = text[:at] + piece + text[at:]
        elif operation == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif operation == "truncate":
            text = text[:at]
        else:
            text = text[:at] + text[at : at + 8] * draw(st.integers(2, 50)) + text[at + 8 :]
    return text


def open_packets() -> st.SearchStrategy[str]:
    """Engine.IO open packets: the real shape, any JSON in its fields, or no object at all."""
    real = st.fixed_dictionaries(
        {"sid": st.text(max_size=20), "pingInterval": st.integers(0, 2**31),
         "pingTimeout": st.integers(0, 2**31), "maxPayload": st.integers(0, 2**31),
         "upgrades": st.lists(st.sampled_from(["websocket", "polling"]))},
    )  # fmt: skip
    keys = st.sampled_from(["sid", "pingInterval", "pingTimeout", "maxPayload", "upgrades", "x"])
    anything = st.dictionaries(keys, json_values(), max_size=6)
    return st.builds(lambda fields: "0" + json.dumps(fields), real | anything | json_values())


def socketio_packets() -> st.SearchStrategy[str]:
    """Encoded Socket.IO packets of every type, namespace, ack id and JSON payload."""
    return st.builds(
        lambda packet_type, namespace, ack_id, data, attachments: sio.encode_packet(
            sio.SocketIOPacket(packet_type, namespace, ack_id, data, attachments)
        ),
        st.integers(0, 6),
        st.sampled_from(["/", "/chat", "/a-b"]),
        st.none() | st.integers(0, 2**40),
        st.none() | st.lists(json_values(), max_size=3)
        | st.dictionaries(st.text(max_size=5), json_values(), max_size=3),
        st.integers(0, 3),
    )  # fmt: skip


def random_frames(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.text(max_size=200) | mutated(valid) | valid


def decodes_or_refuses(decode: Callable[[str], Any], frame: str) -> Any:
    """``decode(frame)``; None when it raised ProtocolError. Any other exception fails."""
    try:
        return decode(frame)
    except sio.ProtocolError:
        return None


@EXAMPLES
@given(random_frames(open_packets()))
@example('0{"sid":"a","pingInterval":Infinity,"pingTimeout":1}')  # int(inf): OverflowError
@example("0" + "[" * 100_000)  # too deep for the JSON decoder: RecursionError
def test_open_packet_decoder_decodes_or_raises_protocol_error(frame: str) -> None:
    opened = decodes_or_refuses(sio.decode_open, frame)
    if opened is not None:
        assert frame.startswith(sio.EIO_OPEN)
        assert isinstance(opened.ping_interval_ms, int) and isinstance(opened.sid, str)


@EXAMPLES
@given(random_frames(socketio_packets()))
@example("4²")  # "²".isdigit() is True, but int("²") raises ValueError
@example('42²["echo"]')
@example("45²-[]")
@example("42" + "1" * 5000 + "[]")  # an ack id beyond int()'s 4,300 digits
@example("42" + "[" * 100_000)
@example('40{"sid":"x"}')
@example('44{"message":"Not allowed"}')
def test_packet_and_connect_reply_decoders_decode_or_raise_protocol_error(frame: str) -> None:
    packet = decodes_or_refuses(sio.decode_packet, frame)
    if packet is not None:
        assert frame[0] == sio.EIO_MESSAGE and 0 <= packet.packet_type <= sio.SIO_BINARY_ACK
        assert packet.ack_id is None or packet.ack_id >= 0
    sid = decodes_or_refuses(sio.decode_connect_reply, frame)
    if sid is not None:
        assert isinstance(sid, str) and frame.startswith("40")


@EXAMPLES
@given(
    st.integers(0, 6),
    st.sampled_from(["/", "/chat"]),
    st.none() | st.integers(0, 2**40),
    st.lists(json_values(allow_nan=False), min_size=1, max_size=3),
    st.integers(0, 3),
)
def test_what_the_encoder_writes_the_decoder_reads_back(
    packet_type: int, namespace: str, ack_id: int | None, data: list[Any], attachments: int
) -> None:
    if packet_type not in (sio.SIO_BINARY_EVENT, sio.SIO_BINARY_ACK):
        attachments = 0
    packet = sio.SocketIOPacket(packet_type, namespace, ack_id, data, attachments)
    assert sio.decode_packet(sio.encode_packet(packet)) == packet
