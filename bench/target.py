"""Where load may go: URLs of servers under test, and the loopback-only rule.

A load generator pointed at the wrong host is a denial-of-service tool, so targets must resolve
to loopback addresses (127.0.0.0/8 or ::1); anything else is refused before a socket is opened.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from bench.errors import UsageError
from bench.protocol.socketio import ENGINEIO_VERSION

SOCKETIO_PATH = "/socket.io/"


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def websocket_url(url: str, protocol: str) -> str:
    """Normalise a user's URL (ws://, http://, wss://, https://) to the WebSocket URL opened.

    Socket.IO servers are reached at ``/socket.io/`` (the default path when none is given) with
    Engine.IO's query for the WebSocket transport. Refuses non-loopback hosts.
    """
    parts = urlsplit(url)
    scheme = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"target {url!r} is not a ws://, http://, wss:// or https:// URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"target {url!r} has an invalid port") from exc
    if port is None:
        raise UsageError(f"target {url!r} has no port")
    if not is_loopback(parts.hostname):
        raise UsageError(
            f"target host {parts.hostname!r} is not a loopback address: "
            "wsbench sends load only to 127.0.0.0/8 and ::1"
        )
    path = parts.path or "/"
    query = parts.query
    if protocol == "socketio":
        if path == "/":
            path = SOCKETIO_PATH
        engineio_query = f"EIO={ENGINEIO_VERSION}&transport=websocket"
        query = f"{query}&{engineio_query}" if query else engineio_query
    return urlunsplit((scheme, parts.netloc, path, query, ""))
