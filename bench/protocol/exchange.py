"""One echo exchange on the wire: the frames the generator sends and the frames it must get back.

Every payload starts with a header holding the message's sequence number and its intended send
time, followed by a deterministic filler up to the requested size, so each payload is unique and
its expected echo is known exactly. Every expected reply is a *head* that differs between
messages (any prefix, with the ack id, and the header) followed by a *tail* that is the same
for every message of an exchange (filler and any suffix, ``FrameBuilder.reply_tail``). The
generator keys its table of outstanding messages by the head (small payloads: by the whole
reply) and checks the tail separately: one dictionary lookup and one comparison both verify
the echo byte for byte and match it to its send time; a wrong, duplicated or unknown echo
simply isn't found.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bench.protocol.socketio import EventFraming

Protocol = Literal["raw", "socketio"]
PayloadKind = Literal["text", "binary"]

# Header: 8 hex digits of sequence number, 16 hex digits of intended send time (ns, monotonic).
# ASCII hex keeps text payloads valid UTF-8 and free of JSON escapes.
SEQ_DIGITS = 8
TIME_DIGITS = 16
HEADER_BYTES = SEQ_DIGITS + TIME_DIGITS
MIN_PAYLOAD_BYTES = HEADER_BYTES
_HEADER_FORMAT = b"%08x%016x"
_SEQ_LIMIT = 16**SEQ_DIGITS

# Text filler: letters only (never escaped in JSON); binary filler: every byte value, so a
# server or client that mangles non-UTF-8 bytes is caught.
_TEXT_FILLER_CYCLE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BINARY_FILLER_CYCLE = bytes(range(256))

OPCODE_TEXT = 1
OPCODE_BINARY = 2


def filler(kind: PayloadKind, length: int) -> bytes:
    cycle = _TEXT_FILLER_CYCLE if kind == "text" else _BINARY_FILLER_CYCLE
    repeats = length // len(cycle) + 1
    return (cycle * repeats)[:length]


def payload(seq: int, intended_ns: int, kind: PayloadKind, size_bytes: int) -> bytes:
    """The payload of message ``seq``: header, then filler up to ``size_bytes``."""
    return (_HEADER_FORMAT % (seq, intended_ns)) + filler(kind, size_bytes - HEADER_BYTES)


def parse_header(data: bytes) -> tuple[int, int]:
    """Sequence number and intended send time (ns) from the start of a payload."""
    if len(data) < HEADER_BYTES:
        raise ValueError("payload shorter than its header")
    header = data[:HEADER_BYTES]
    return int(header[:SEQ_DIGITS], 16), int(header[SEQ_DIGITS:], 16)


@dataclass(frozen=True)
class Exchange:
    """How one message and its echo look on the wire for a protocol, payload kind and style.

    ``frames(seq, t_ns)`` returns ``(preamble, body, expected_reply)``:
    - ``preamble``: a text frame to send before the body (Socket.IO's binary placeholder
      packet), or ``None``;
    - ``body``: the frame carrying the payload, sent with ``body_opcode``;
    - ``expected_reply``: the exact bytes of the reply frame that carries the payload.
    For Socket.IO binary, the reply is also preceded by a placeholder text frame, whose exact
    bytes ``expected_reply_preamble(seq)`` gives.

    With ``ack``, Socket.IO sends each event with an ack id and expects the acknowledgement
    packet back. Raw WebSocket has no acks: the request/response equivalent is a reply matched
    by the id the message carries, which every raw message already does (its header's
    sequence number), so the raw frames are the same with or without ``ack``.
    """

    protocol: Protocol
    payload_kind: PayloadKind
    payload_bytes: int
    ack: bool = False
    event: str = "echo"

    def __post_init__(self) -> None:
        if self.payload_bytes < MIN_PAYLOAD_BYTES:
            raise ValueError(
                f"payload of {self.payload_bytes} bytes is below the minimum of "
                f"{MIN_PAYLOAD_BYTES} (sequence number and send time)"
            )

    @property
    def body_opcode(self) -> int:
        return OPCODE_BINARY if self.payload_kind == "binary" else OPCODE_TEXT

    @property
    def frames_per_message(self) -> int:
        return 2 if self.protocol == "socketio" and self.payload_kind == "binary" else 1

    def filler_bytes(self) -> bytes:
        return filler(self.payload_kind, self.payload_bytes - HEADER_BYTES)

    def frames(self, seq: int, t_ns: int) -> tuple[bytes | None, bytes, bytes]:
        """Reference construction, clear rather than fast; the generator uses ``FrameBuilder``."""
        body = payload(seq % _SEQ_LIMIT, t_ns, self.payload_kind, self.payload_bytes)
        if self.protocol == "raw":
            return None, body, body
        framing = EventFraming(self.event)
        ack_id = seq if self.ack else None
        if self.payload_kind == "binary":
            return framing.binary_emit_placeholder(ack_id).encode(), body, body
        sent = framing.emit_prefix(ack_id).encode() + b'"' + body + b'"]'
        if self.ack:
            return None, sent, framing.ack_prefix(seq).encode() + b'"' + body + b'"]'
        return None, sent, sent

    def expected_reply_preamble(self, seq: int) -> bytes | None:
        if self.protocol != "socketio" or self.payload_kind != "binary":
            return None
        framing = EventFraming(self.event)
        if self.ack:
            return framing.binary_ack_placeholder(seq).encode()
        return framing.binary_emit_placeholder().encode()


class FrameBuilder:
    """Builds ``Exchange.frames`` fast, for the generator's hot path.

    Only the header (and, with acks, the ack id) changes between messages; everything else is
    precomputed into byte templates, and the shape's function is chosen once here instead of
    branching per message. ``body_and_reply(seq, t_ns)`` gives the body frame and the expected
    reply; ``body_and_head(seq, t_ns)`` the body frame and the expected reply's head, which
    followed by ``reply_tail`` is the expected reply. ``preamble`` is ``None`` or a function of
    ``seq`` giving the text frame that goes before the body (Socket.IO binary), and
    ``reply_preamble`` likewise for the placeholder frame that goes before the reply. Unit
    tests check all of them against ``Exchange`` for every protocol, payload kind and style.
    """

    __slots__ = ("body_and_head", "body_and_reply", "preamble", "reply_preamble", "reply_tail")

    def __init__(self, exchange: Exchange) -> None:
        framing = EventFraming(exchange.event)
        tail = exchange.filler_bytes()
        hexlify = binascii.b2a_hex
        mask = _SEQ_LIMIT - 1
        self.preamble: Callable[[int], bytes] | None = None
        self.reply_preamble: Callable[[int], bytes] | None = None

        # The header is hex of 4 bytes of sequence number and 8 bytes of time: the same digits
        # as _HEADER_FORMAT, about twice as fast to build.
        def raw(seq: int, t_ns: int) -> tuple[bytes, bytes]:
            body = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + tail
            return body, body

        def raw_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
            head = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
            return head + tail, head

        if exchange.protocol == "raw" or exchange.payload_kind == "binary":
            self.body_and_reply: Callable[[int, int], tuple[bytes, bytes]] = raw
            self.body_and_head: Callable[[int, int], tuple[bytes, bytes]] = raw_head
            self.reply_tail = tail
            if exchange.protocol == "socketio":
                if exchange.ack:
                    template = _percent_template(framing.binary_emit_placeholder(_ACK_SENTINEL))
                    self.preamble = template.__mod__
                    reply = _percent_template(framing.binary_ack_placeholder(_ACK_SENTINEL))
                    self.reply_preamble = reply.__mod__
                else:
                    constant = framing.binary_emit_placeholder().encode()
                    self.preamble = self.reply_preamble = lambda seq: constant
            return
        string_tail = tail + b'"]'
        self.reply_tail = string_tail
        if exchange.ack:
            send_prefix = _percent_template(framing.emit_prefix(_ACK_SENTINEL)) + b'"'
            reply_prefix = _percent_template(framing.ack_prefix(_ACK_SENTINEL)) + b'"'

            def text_ack(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                payload = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + string_tail
                return (send_prefix % seq) + payload, (reply_prefix % seq) + payload

            def text_ack_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                header = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
                return (send_prefix % seq) + header + string_tail, (reply_prefix % seq) + header

            self.body_and_reply = text_ack
            self.body_and_head = text_ack_head
            return
        prefix = framing.emit_prefix().encode() + b'"'

        def text_emit(seq: int, t_ns: int) -> tuple[bytes, bytes]:
            sent = prefix + hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + string_tail
            return sent, sent

        def text_emit_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
            head = prefix + hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
            return head + string_tail, head

        self.body_and_reply = text_emit
        self.body_and_head = text_emit_head

    def frames(self, seq: int, t_ns: int) -> tuple[bytes | None, bytes, bytes]:
        """The same triple as ``Exchange.frames`` (for tests; the hot path uses the parts)."""
        body, reply = self.body_and_reply(seq, t_ns)
        return (None if self.preamble is None else self.preamble(seq)), body, reply


_ACK_SENTINEL = 987654321


def _percent_template(text: str) -> bytes:
    """Turn a frame built with ack id ``_ACK_SENTINEL`` into a template with ``%d`` there."""
    if "%" in text:
        raise ValueError("event names must not contain '%'")
    return text.replace(str(_ACK_SENTINEL), "%d", 1).encode()
