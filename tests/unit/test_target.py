from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.target import is_allowed, is_loopback, parse_networks, websocket_url


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


def test_allowed_networks_widen_loopback_for_a_run() -> None:
    networks = parse_networks("--allow-network", "192.0.2.0/30, 2001:db8::/64")
    assert networks == ("192.0.2.0/30", "2001:db8::/64")
    assert is_allowed("192.0.2.1", networks) and is_allowed("2001:db8::5", networks)
    assert is_allowed("127.0.0.1", networks)  # loopback always
    assert not is_allowed("192.0.2.4", networks) and not is_allowed("198.51.100.1", networks)
    assert websocket_url("ws://192.0.2.1:9/", "raw", networks) == "ws://192.0.2.1:9/"
    with pytest.raises(UsageError, match=r"192.0.2.0/30, 2001:db8::/64 \(--allow-network\)"):
        websocket_url("ws://192.0.2.9:9/", "raw", networks)
    assert parse_networks("--allow-network", "10.1.2.3/24") == ("10.1.2.0/24",)


@pytest.mark.parametrize(
    ("value", "message"),
    [("10.0.0.0/33", "expected a network"), ("nowhere", "expected a network"),
     ("0.0.0.0/0", "not every address"), ("::/0", "not every address")],
)  # fmt: skip
def test_malformed_or_boundless_networks_are_refused(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_networks("--allow-network", value)
