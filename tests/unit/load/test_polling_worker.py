from __future__ import annotations

import json

from bench.load.polling_worker import encode_event, polling_url, split_payload


def test_polling_url_swaps_the_transport_and_scheme() -> None:
    url = "ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket"
    assert polling_url(url) == "http://127.0.0.1:8000/socket.io/?EIO=4&transport=polling"


def test_events_and_payloads_are_engineio_v4_polling() -> None:
    packet = encode_event('a"b')
    assert packet == '42["echo","a\\"b"]'
    assert json.loads(packet[2:]) == ["echo", 'a"b']
    assert split_payload(f"{packet}\x1e2\x1e{packet}") == [packet, "2", packet]
    assert split_payload("") == []
