"""Bytes on the wire, counted by the kernel: TCP_INFO's byte counters of each client socket.

Everything the generator and the server put on a connection after its handshake is counted:
WebSocket frame headers and masks, Engine.IO/Socket.IO envelopes, attachment frames. The
kernel counts TCP payload bytes (``tcpi_bytes_acked`` sent and acknowledged,
``tcpi_bytes_received``), so nothing is derived from a formula. There is no library for this
(psutil reports per-interface, not per-socket, counters), hence the struct parsing here.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked and tcpi_bytes_received are the two __u64
# after tcpi_pacing_rate and tcpi_max_pacing_rate (Linux 4.1 and later).
_BYTES_ACKED_OFFSET = 120
_BYTES_RECEIVED_OFFSET = 128
TCP_INFO_BYTES = 256


@dataclass(frozen=True)
class WireBytes:
    up: int  # sent by the client (and acknowledged by the server's kernel)
    down: int  # received by the client

    def __sub__(self, other: WireBytes) -> WireBytes:
        return WireBytes(self.up - other.up, self.down - other.down)


def parse_tcp_info(raw: bytes) -> WireBytes | None:
    """The two counters from a ``TCP_INFO`` answer; None when the kernel's struct is too old."""
    if len(raw) < _BYTES_RECEIVED_OFFSET + 8:
        return None
    (up,) = struct.unpack_from("=Q", raw, _BYTES_ACKED_OFFSET)
    (down,) = struct.unpack_from("=Q", raw, _BYTES_RECEIVED_OFFSET)
    return WireBytes(up, down)


class HasSocket(Protocol):
    def getsockopt(self, level: int, option: int, buflen: int) -> bytes: ...


def read(sock: HasSocket) -> WireBytes | None:
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except OSError:
        return None
    return parse_tcp_info(raw)


def total(sockets: Iterable[HasSocket | None]) -> WireBytes | None:
    """Summed over sockets; None when any socket cannot be read (the figure would be partial)."""
    up = down = 0
    for sock in sockets:
        counters = read(sock) if sock is not None else None
        if counters is None:
            return None
        up += counters.up
        down += counters.down
    return WireBytes(up, down)
