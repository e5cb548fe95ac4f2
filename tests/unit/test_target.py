from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.target import is_loopback, websocket_url


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.4.5") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("192.0.2.1") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("ws://127.0.0.1:8000/", "raw", "ws://127.0.0.1:8000/"),
        ("http://127.0.0.1:8000", "raw", "ws://127.0.0.1:8000/"),
        (
            "http://127.0.0.1:8000",
            "socketio",
            "ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket",
        ),
        (
            "ws://[::1]:81/socket.io/",
            "socketio",
            "ws://[::1]:81/socket.io/?EIO=4&transport=websocket",
        ),
    ],
)
def test_websocket_url(url: str, protocol: str, expected: str) -> None:
    assert websocket_url(url, protocol) == expected


def test_remote_targets_are_refused() -> None:
    with pytest.raises(UsageError, match="loopback"):
        websocket_url("ws://192.0.2.1:9/", "raw")
