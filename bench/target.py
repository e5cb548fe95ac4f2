"""Where load may go: URLs of servers under test, and the loopback-only rule.

A load generator pointed at the wrong host is a denial-of-service tool, so targets must resolve
to loopback addresses (127.0.0.0/8 or ::1); anything else is refused before a socket is opened,
unless the run names the networks it may reach (``--allow-network CIDR``, given each run,
recorded in meta.json; nothing in a file or the environment widens it).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from bench.errors import UsageError
from bench.protocol.socketio import ENGINEIO_VERSION

SOCKETIO_PATH = "/socket.io/"


def parse_networks(option: str, value: str) -> tuple[str, ...]:
    """``--allow-network 10.0.0.0/24,fd00::/64`` -> the networks, normalised; one line
    (UsageError) for a malformed one or one that is every address."""
    found = []
    for text in (v.strip() for v in value.split(",")):
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise UsageError(f"{option} {text!r}: expected a network such as 10.0.0.0/24") from None
        if network.prefixlen == 0:
            raise UsageError(f"{option} {text}: name the network to load, not every address")
        found.append(str(network))
    return tuple(dict.fromkeys(found))


def _addresses(host: str) -> set[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return set()
    return {str(info[4][0]) for info in infos}


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    return is_allowed(host)


def is_allowed(host: str, networks: Sequence[str] = ()) -> bool:
    """True when every address ``host`` resolves to is loopback or in one of ``networks``."""
    allowed = [ipaddress.ip_network(n) for n in networks]
    addresses = [ipaddress.ip_address(a) for a in _addresses(host)]
    return bool(addresses) and all(
        a.is_loopback or any(a.version == n.version and a in n for n in allowed) for a in addresses
    )


def refuse_unless_allowed(what: str, host: str, networks: Sequence[str] = ()) -> None:
    """UsageError, one line, unless ``host`` is loopback or in ``networks``."""
    if not is_allowed(host, networks):
        widen = f" or {', '.join(networks)} (--allow-network)" if networks else ""
        hint = "" if networks else "; --allow-network CIDR lets one run reach a network of yours"
        raise UsageError(
            f"{what} {host!r} is not a loopback address{widen}: wsbench sends load only to "
            f"127.0.0.0/8 and ::1{hint}"
        )


def websocket_url(url: str, protocol: str, networks: Sequence[str] = ()) -> str:
    """Normalise a user's URL (ws://, http://, wss://, https://) to the WebSocket URL opened.

    Socket.IO servers are reached at ``/socket.io/`` (the default path when none is given) with
    Engine.IO's query for the WebSocket transport. Refuses hosts outside loopback and
    ``networks`` (--allow-network).
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
    refuse_unless_allowed("target host", parts.hostname, networks)
    path = parts.path or "/"
    query = parts.query
    if protocol == "socketio":
        if path == "/":
            path = SOCKETIO_PATH
        engineio_query = f"EIO={ENGINEIO_VERSION}&transport=websocket"
        query = f"{query}&{engineio_query}" if query else engineio_query
    return urlunsplit((scheme, parts.netloc, path, query, ""))
