from __future__ import annotations

import pytest
import socketio.packet as reference

from bench.protocol import socketio as sio


def reference_encoding(packet_type: int, data: object, ack_id: int | None = None) -> str:
    """What python-socketio itself puts in the WebSocket frame (Engine.IO "4" + packet)."""
    encoded = reference.Packet(packet_type, data=data, id=ack_id).encode()
    return "4" + (encoded if isinstance(encoded, str) else encoded[0])


@pytest.mark.parametrize(
    ("packet", "ref"),
    [
        (sio.SocketIOPacket(sio.SIO_EVENT, data=["echo", "hi"]), (2, ["echo", "hi"], None)),
        (sio.SocketIOPacket(sio.SIO_EVENT, ack_id=7, data=["echo", "hi"]), (2, ["echo", "hi"], 7)),
        (sio.SocketIOPacket(sio.SIO_ACK, ack_id=7, data=["hi"]), (3, ["hi"], 7)),
        (sio.SocketIOPacket(sio.SIO_CONNECT), (0, None, None)),
        (sio.SocketIOPacket(sio.SIO_DISCONNECT), (1, None, None)),
    ],
)
def test_encoding_matches_python_socketio(
    packet: sio.SocketIOPacket, ref: tuple[int, object, int | None]
) -> None:
    assert sio.encode_packet(packet) == reference_encoding(*ref)


def test_binary_event_matches_python_socketio_placeholder() -> None:
    encoded = reference.Packet(2, data=["echo", b"\x00\x01"]).encode()
    assert isinstance(encoded, list)
    assert "4" + encoded[0] == sio.EventFraming("echo").binary_emit_placeholder()
    assert encoded[1] == b"\x00\x01"
    with_ack = reference.Packet(2, data=["echo", b"\x00"], id=12).encode()
    assert "4" + with_ack[0] == sio.EventFraming("echo").binary_emit_placeholder(12)
    ack = reference.Packet(3, data=[b"\x00"], id=12).encode()
    assert "4" + ack[0] == sio.EventFraming("echo").binary_ack_placeholder(12)


@pytest.mark.parametrize(
    "frame",
    ['42["echo","hi"]', '4217["echo","hi"]', '4317["hi"]', "40", "41", '44{"message":"no"}',
     '451-["echo",{"_placeholder":true,"num":0}]', '42/chat,3["a",1]'],
)  # fmt: skip
def test_decode_inverts_encode(frame: str) -> None:
    assert sio.encode_packet(sio.decode_packet(frame)) == frame


def test_decode_fields() -> None:
    packet = sio.decode_packet('461-/chat,12[{"_placeholder":true,"num":0}]')
    assert packet.packet_type == sio.SIO_BINARY_ACK
    assert packet.attachments == 1
    assert packet.namespace == "/chat"
    assert packet.ack_id == 12
    assert packet.data == [{"_placeholder": True, "num": 0}]


@pytest.mark.parametrize("frame", ["", "4", "2", "49[]", "42[not json", "45[]", "x2"])
def test_decode_rejects_malformed(frame: str) -> None:
    with pytest.raises(sio.ProtocolError):
        sio.decode_packet(frame)


def test_open_packet() -> None:
    opened = sio.decode_open(
        '0{"sid":"abc","upgrades":[],"pingTimeout":60000,"pingInterval":3600000,"maxPayload":1048576}'
    )
    assert opened == sio.OpenPacket("abc", 3600000, 60000, 1048576, ())
    with pytest.raises(sio.ProtocolError):
        sio.decode_open('0{"sid":1}')
    with pytest.raises(sio.ProtocolError):
        sio.decode_open('40{"sid":"x"}')


def test_connect_and_reply() -> None:
    assert sio.encode_connect() == "40"
    assert sio.encode_connect("/chat") == "40/chat,"
    assert sio.decode_connect_reply('40{"sid":"s1"}') == "s1"
    with pytest.raises(sio.ProtocolError, match="refused"):
        sio.decode_connect_reply('44{"message":"Unauthorized"}')
    with pytest.raises(sio.ProtocolError):
        sio.decode_connect_reply('42["x"]')
