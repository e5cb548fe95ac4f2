"""The servers under test: name, module, protocol. The one place that lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from servers.common import LOOPS as SERVER_LOOPS


@dataclass(frozen=True)
class ServerInfo:
    name: str
    module: str
    protocol: Literal["raw", "socketio"]
    description: str
    # For a Socket.IO server, the raw server on the same WebSocket implementation: the pair
    # whose ratio isolates what Socket.IO itself costs (the report's verdict uses it).
    raw_counterpart: str | None = None


SERVERS: dict[str, ServerInfo] = {
    info.name: info
    for info in (
        ServerInfo("websockets", "servers.websockets", "raw", "websockets asyncio server"),
        ServerInfo("aiohttp", "servers.aiohttp", "raw", "aiohttp WebSocketResponse"),
        ServerInfo(
            "socketio-aiohttp",
            "servers.socketio_aiohttp",
            "socketio",
            "python-socketio AsyncServer on aiohttp",
            raw_counterpart="aiohttp",
        ),
        ServerInfo(
            "socketio-asgi",
            "servers.socketio_asgi",
            "socketio",
            "python-socketio ASGIApp under uvicorn",
            raw_counterpart="websockets",  # uvicorn runs websockets' Sans-I/O protocol
        ),
    )
}

# The event loops a server can run on: the servers' own list.
LOOPS = SERVER_LOOPS
