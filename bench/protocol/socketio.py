"""Engine.IO v4 and Socket.IO v5 packets over the WebSocket transport, as plain strings (no I/O).

The generator speaks this wire protocol itself instead of using python-socketio's client, which
is too slow to load a Socket.IO server (docs/methodology.md, "Why the generator speaks the
protocols itself"). Only what a WebSocket-transport client needs is here: the open packet,
namespace connect, events and acknowledgements (with binary attachments), ping/pong, the upgrade
probe and close.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ENGINEIO_VERSION = 4

# Engine.IO packet types: one ASCII digit at the start of a text frame.
EIO_OPEN = "0"
EIO_CLOSE = "1"
EIO_PING = "2"
EIO_PONG = "3"
EIO_MESSAGE = "4"
EIO_UPGRADE = "5"
EIO_NOOP = "6"
# Upgrading a long-polling session to WebSocket: the client probes the new socket with a ping
# carrying "probe", the server answers with a pong carrying it, and the client confirms.
EIO_PROBE = EIO_PING + "probe"
EIO_PROBE_REPLY = EIO_PONG + "probe"

# Socket.IO packet types: the digit after Engine.IO's MESSAGE "4".
SIO_CONNECT = 0
SIO_DISCONNECT = 1
SIO_EVENT = 2
SIO_ACK = 3
SIO_CONNECT_ERROR = 4
SIO_BINARY_EVENT = 5
SIO_BINARY_ACK = 6

# The placeholder python-socketio writes for the first (only) binary attachment.
PLACEHOLDER_JSON = '{"_placeholder":true,"num":0}'


class ProtocolError(ValueError):
    """A frame that is not valid Engine.IO / Socket.IO for a WebSocket-transport client."""


def _dumps(data: Any) -> str:
    # The same separators python-socketio uses, so that encodings compare byte for byte.
    return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True)
class OpenPacket:
    """Engine.IO's handshake: the first frame a server sends on a new connection."""

    sid: str
    ping_interval_ms: int
    ping_timeout_ms: int
    max_payload_bytes: int
    upgrades: tuple[str, ...]


def decode_open(frame: str) -> OpenPacket:
    if not frame.startswith(EIO_OPEN):
        raise ProtocolError(f"expected an Engine.IO open packet, got {frame[:40]!r}")
    try:
        fields = json.loads(frame[1:])
        return OpenPacket(
            sid=str(fields["sid"]),
            ping_interval_ms=int(fields["pingInterval"]),
            ping_timeout_ms=int(fields["pingTimeout"]),
            max_payload_bytes=int(fields.get("maxPayload", 0)),
            upgrades=tuple(fields.get("upgrades", ())),
        )
    # OverflowError: a number such as Infinity; RecursionError: JSON nested too deep.
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"malformed Engine.IO open packet: {frame[:80]!r}") from exc


@dataclass(frozen=True)
class SocketIOPacket:
    """A decoded Socket.IO packet (inside an Engine.IO MESSAGE)."""

    packet_type: int
    namespace: str = "/"
    ack_id: int | None = None
    data: Any = None
    attachments: int = 0


def encode_packet(packet: SocketIOPacket) -> str:
    """Encode a Socket.IO packet as the text of one WebSocket frame (Engine.IO prefix included).

    Binary attachments travel as separate binary frames after this one; the caller sends them.
    """
    text = EIO_MESSAGE + str(packet.packet_type)
    if packet.packet_type in (SIO_BINARY_EVENT, SIO_BINARY_ACK):
        text += f"{packet.attachments}-"
    if packet.namespace != "/":
        text += packet.namespace + ","
    if packet.ack_id is not None:
        text += str(packet.ack_id)
    if packet.data is not None:
        text += _dumps(packet.data)
    return text


# Attachment counts and ack ids: far more digits than any real one, far fewer than int()'s
# limit on digits (4,300).
_MAX_NUMBER_DIGITS = 20


def _is_ascii_digits(text: str) -> bool:
    """Only 0-9: str.isdigit() also accepts digits such as "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def decode_packet(frame: str) -> SocketIOPacket:
    """Decode the text of a WebSocket frame holding an Engine.IO MESSAGE with a Socket.IO packet."""
    if len(frame) < 2 or frame[0] != EIO_MESSAGE or not _is_ascii_digits(frame[1]):
        raise ProtocolError(f"not a Socket.IO packet: {frame[:40]!r}")
    packet_type = int(frame[1])
    if packet_type > SIO_BINARY_ACK:
        raise ProtocolError(f"unknown Socket.IO packet type {packet_type}")
    rest = frame[2:]
    attachments = 0
    if packet_type in (SIO_BINARY_EVENT, SIO_BINARY_ACK):
        count, dash, rest = rest.partition("-")
        if not dash or not _is_ascii_digits(count) or len(count) > _MAX_NUMBER_DIGITS:
            raise ProtocolError(f"binary packet without attachment count: {frame[:40]!r}")
        attachments = int(count)
    namespace = "/"
    if rest.startswith("/"):
        namespace, comma, rest = rest.partition(",")
        if not comma:
            rest = ""
    digits = 0
    while digits < len(rest) and _is_ascii_digits(rest[digits]):
        digits += 1
    if digits > _MAX_NUMBER_DIGITS:
        raise ProtocolError(f"Socket.IO ack id of {digits} digits: {frame[:40]!r}")
    ack_id = int(rest[:digits]) if digits else None
    rest = rest[digits:]
    try:
        data = json.loads(rest) if rest else None
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise ProtocolError(f"Socket.IO packet with malformed JSON: {frame[:80]!r}") from exc
    return SocketIOPacket(packet_type, namespace, ack_id, data, attachments)


def encode_connect(namespace: str = "/") -> str:
    """The client's namespace CONNECT, sent after the open packet."""
    return encode_packet(SocketIOPacket(SIO_CONNECT, namespace))


def decode_connect_reply(frame: str) -> str:
    """Return the Socket.IO session id from the server's CONNECT reply; refusals raise."""
    packet = decode_packet(frame)
    if packet.packet_type == SIO_CONNECT_ERROR:
        raise ProtocolError(f"namespace connect refused: {packet.data!r}")
    if packet.packet_type != SIO_CONNECT or not isinstance(packet.data, dict):
        raise ProtocolError(f"expected a Socket.IO CONNECT reply, got {frame[:40]!r}")
    return str(packet.data.get("sid", ""))


@dataclass(frozen=True)
class EventFraming:
    """The constant text around a string payload in an event and in its expected reply.

    The generator builds each frame as ``prefix + payload + suffix`` instead of calling a JSON
    encoder per message: payloads are restricted to characters JSON leaves unescaped, so the
    result equals what ``encode_packet`` (and python-socketio) produce, which a test checks.
    """

    event: str
    namespace: str = "/"

    def _ns(self) -> str:
        return "" if self.namespace == "/" else self.namespace + ","

    def emit_prefix(self, ack_id: int | None = None) -> str:
        ack = "" if ack_id is None else str(ack_id)
        return f"{EIO_MESSAGE}{SIO_EVENT}{self._ns()}{ack}[{_dumps(self.event)},"

    def ack_prefix(self, ack_id: int) -> str:
        return f"{EIO_MESSAGE}{SIO_ACK}{self._ns()}{ack_id}["

    def binary_emit_placeholder(self, ack_id: int | None = None) -> str:
        ack = "" if ack_id is None else str(ack_id)
        event = _dumps(self.event)
        return f"{EIO_MESSAGE}{SIO_BINARY_EVENT}1-{self._ns()}{ack}[{event},{PLACEHOLDER_JSON}]"

    def binary_ack_placeholder(self, ack_id: int) -> str:
        return f"{EIO_MESSAGE}{SIO_BINARY_ACK}1-{self._ns()}{ack_id}[{PLACEHOLDER_JSON}]"
