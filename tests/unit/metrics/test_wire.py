from __future__ import annotations

import socket
import struct

from bench.metrics.wire import WireBytes, parse_tcp_info, total


def tcp_info(acked: int, received: int) -> bytes:
    """A struct tcp_info as Linux lays it out: 120 bytes of other fields, then the counters."""
    return bytes(120) + struct.pack("=QQ", acked, received) + bytes(96)


class FakeSocket:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def getsockopt(self, level: int, option: int, buflen: int) -> bytes:
        assert (level, option) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        return self.raw[:buflen]


def test_counters_are_read_at_their_offsets() -> None:
    assert parse_tcp_info(tcp_info(1234, 98765)) == WireBytes(1234, 98765)


def test_a_kernel_without_the_counters_gives_none() -> None:
    assert parse_tcp_info(bytes(104)) is None


def test_total_sums_sockets_and_refuses_a_partial_count() -> None:
    sockets = [FakeSocket(tcp_info(10, 20)), FakeSocket(tcp_info(1, 2))]
    assert total(sockets) == WireBytes(11, 22)
    assert total([*sockets, None]) is None
    assert WireBytes(11, 22) - WireBytes(1, 2) == WireBytes(10, 20)
