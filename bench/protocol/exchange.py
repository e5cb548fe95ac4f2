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
import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bench.protocol.socketio import EventFraming

Protocol = Literal["raw", "socketio"]
PayloadKind = Literal["text", "binary", "json"]
PAYLOAD_KINDS: tuple[PayloadKind, ...] = ("text", "binary", "json")

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


# json: a chat-like JSON object, so that compression has real text to work on: field names
# repeated in every entry, short strings from small vocabularies, numbers. Its header is the
# value of its first field; the rest (the tail) is the same for every message of a size, drawn
# once from a fixed seed. Compact separators, ASCII and integers only, so python-socketio's and
# Node's JSON encoders write an echoed object back byte for byte as it was sent.
JSON_HEAD = b'{"id":"'
_JSON_AFTER_HEADER = b'",'
_JSON_SEED = 20261202
_JSON_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
_JSON_ROOMS = ("general", "random", "support", "release", "design", "ops")
_JSON_WORDS = (
    "hey", "are", "we", "still", "on", "for", "lunch", "the", "build", "is", "green", "again",
    "can", "you", "review", "my", "pull", "request", "today", "thanks", "deploy", "at", "five",
    "looks", "good", "to", "me", "ship", "it", "who", "broke", "staging", "fixed", "now",
)  # fmt: skip
_JSON_MIN_TAIL = b'"msgs":[],"pad":""}'
MIN_JSON_PAYLOAD_BYTES = (
    len(JSON_HEAD) + HEADER_BYTES + len(_JSON_AFTER_HEADER) + len(_JSON_MIN_TAIL)
)


def min_payload_bytes(kind: PayloadKind) -> int:
    return MIN_JSON_PAYLOAD_BYTES if kind == "json" else MIN_PAYLOAD_BYTES


@functools.cache
def _json_tail(length: int) -> bytes:
    """The JSON object's fields after the header's: chat messages drawn from a fixed seed while
    they fit, then a padding string to exactly ``length`` bytes."""
    rng = random.Random(_JSON_SEED)
    room = len(_JSON_MIN_TAIL)
    messages: list[bytes] = []
    used = 0
    for index in range(length):  # bounded: each entry takes more than one byte
        entry = json.dumps(
            {
                "user": rng.choice(_JSON_USERS),
                "room": rng.choice(_JSON_ROOMS),
                "text": " ".join(rng.choice(_JSON_WORDS) for _ in range(rng.randint(3, 12))),
                "ts": 1764633600 + 7 * index + rng.randint(0, 6),
                "likes": rng.randint(0, 20),
            },
            separators=(",", ":"),
        ).encode()
        extra = len(entry) + (1 if messages else 0)
        if room + used + extra > length:
            break
        messages.append(entry)
        used += extra
    pad = length - room - used
    return b'"msgs":[' + b",".join(messages) + b'],"pad":"' + b"x" * pad + b'"}'


def filler(kind: PayloadKind, length: int) -> bytes:
    """What follows the header: a repeating cycle (text, binary), or the JSON object's other
    fields (json, ``length`` counting from the end of the header)."""
    if kind == "json":
        return _JSON_AFTER_HEADER + _json_tail(length - len(_JSON_AFTER_HEADER))
    cycle = _TEXT_FILLER_CYCLE if kind == "text" else _BINARY_FILLER_CYCLE
    repeats = length // len(cycle) + 1
    return (cycle * repeats)[:length]


def head_prefix(kind: PayloadKind) -> bytes:
    """What comes before the header in a payload: the JSON object's opening (json), else
    nothing."""
    return JSON_HEAD if kind == "json" else b""


def payload(seq: int, intended_ns: int, kind: PayloadKind, size_bytes: int) -> bytes:
    """The payload of message ``seq``: header, then filler up to ``size_bytes``."""
    prefix = head_prefix(kind)
    rest = size_bytes - len(prefix) - HEADER_BYTES
    return prefix + (_HEADER_FORMAT % (seq, intended_ns)) + filler(kind, rest)


def parse_header(data: bytes) -> tuple[int, int]:
    """Sequence number and intended send time (ns) from the start of a payload."""
    if data.startswith(JSON_HEAD):
        data = data[len(JSON_HEAD) :]
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
        minimum = min_payload_bytes(self.payload_kind)
        if self.payload_bytes < minimum:
            holds = "sequence number and send time"
            if self.payload_kind == "json":
                holds = f"a JSON object with its {holds}"
            raise ValueError(
                f"payload of {self.payload_bytes} bytes is below the minimum of {minimum} ({holds})"
            )

    @property
    def body_opcode(self) -> int:
        return OPCODE_BINARY if self.payload_kind == "binary" else OPCODE_TEXT

    @property
    def frames_per_message(self) -> int:
        return 2 if self.protocol == "socketio" and self.payload_kind == "binary" else 1

    def filler_bytes(self) -> bytes:
        prefix = head_prefix(self.payload_kind)
        return filler(self.payload_kind, self.payload_bytes - len(prefix) - HEADER_BYTES)

    def frames(self, seq: int, t_ns: int) -> tuple[bytes | None, bytes, bytes]:
        """Reference construction, clear rather than fast; the generator uses ``FrameBuilder``."""
        body = payload(seq % _SEQ_LIMIT, t_ns, self.payload_kind, self.payload_bytes)
        if self.protocol == "raw":
            return None, body, body
        framing = EventFraming(self.event)
        ack_id = seq if self.ack else None
        if self.payload_kind == "binary":
            return framing.binary_emit_placeholder(ack_id).encode(), body, body
        # A text payload travels as a JSON string, a json payload as the object itself.
        quote = b"" if self.payload_kind == "json" else b'"'
        argument = quote + body + quote + b"]"
        sent = framing.emit_prefix(ack_id).encode() + argument
        if self.ack:
            return None, sent, framing.ack_prefix(seq).encode() + argument
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
        # Before the header: nothing, or a json payload's opening (the same for every message).
        opening = head_prefix(exchange.payload_kind)
        hexlify = binascii.b2a_hex
        mask = _SEQ_LIMIT - 1
        self.preamble: Callable[[int], bytes] | None = None
        self.reply_preamble: Callable[[int], bytes] | None = None

        # The header is hex of 4 bytes of sequence number and 8 bytes of time: the same digits
        # as _HEADER_FORMAT, about twice as fast to build.
        if not opening:

            def raw(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                body = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + tail
                return body, body

            def raw_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                head = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
                return head + tail, head

        else:  # json: the object's opening, then the header

            def raw(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                body = opening + hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + tail
                return body, body

            def raw_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                head = opening + hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
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
        # A text payload is a JSON string inside the packet, a json payload the object itself.
        quote = b"" if exchange.payload_kind == "json" else b'"'
        string_tail = tail + quote + b"]"
        self.reply_tail = string_tail
        if exchange.ack:
            send_prefix = _percent_template(framing.emit_prefix(_ACK_SENTINEL)) + quote + opening
            reply_prefix = _percent_template(framing.ack_prefix(_ACK_SENTINEL)) + quote + opening

            def text_ack(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                payload = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12)) + string_tail
                return (send_prefix % seq) + payload, (reply_prefix % seq) + payload

            def text_ack_head(seq: int, t_ns: int) -> tuple[bytes, bytes]:
                header = hexlify((((seq & mask) << 64) | t_ns).to_bytes(12))
                return (send_prefix % seq) + header + string_tail, (reply_prefix % seq) + header

            self.body_and_reply = text_ack
            self.body_and_head = text_ack_head
            return
        prefix = framing.emit_prefix().encode() + quote + opening

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
