"""The kernel's byte counters on a real loopback connection (bench.metrics.wire)."""

from __future__ import annotations

import socket

import pytest

from bench.metrics.wire import WireBytes, total

pytestmark = pytest.mark.integration


def test_a_real_loopback_socket_counts_what_it_sent_and_received() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    server.settimeout(5)
    try:
        before = total([client])
        assert before is not None
        client.sendall(b"x" * 1000)
        assert server.recv(1000, socket.MSG_WAITALL) == b"x" * 1000
        server.sendall(b"y" * 300)
        assert client.recv(300, socket.MSG_WAITALL) == b"y" * 300
        after = total([client])
        assert after is not None and after - before == WireBytes(1000, 300)
    finally:
        for s in (client, server, listener):
            s.close()
