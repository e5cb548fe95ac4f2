from __future__ import annotations

import json
import os
import socket

from bench.load.polling_worker import CountedSocket, encode_event, polling_url, split_payload
from bench.metrics import wire


def test_polling_url_swaps_the_transport_and_scheme() -> None:
    url = "ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket"
    assert polling_url(url) == "http://127.0.0.1:8000/socket.io/?EIO=4&transport=polling"


def test_events_and_payloads_are_engineio_v4_polling() -> None:
    packet = encode_event('a"b')
    assert packet == '42["echo","a\\"b"]'
    assert json.loads(packet[2:]) == ["echo", 'a"b']
    assert split_payload(f"{packet}\x1e2\x1e{packet}") == [packet, "2", packet]
    assert split_payload("") == []


def test_a_closed_client_socket_still_answers_with_its_last_counters() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = CountedSocket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
        peer, _ = server.accept()
        client.sendall(b"x" * 1000)
        assert peer.recv(2000)
        peer.sendall(b"y" * 500)
        assert client.recv(2000)
        peer.close()
        before = wire.read(client)
        os.close(client.detach())  # what uvloop does when the transport closes
        after = wire.read(client)
        assert before is not None and after == before
        assert after.up >= 1000 and after.down >= 500
    finally:
        server.close()
        client.close()
