"""The servers under test: name, module, protocol. The one place that lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServerInfo:
    name: str
    module: str
    protocol: Literal["raw", "socketio"]
    description: str

    def url(self, host: str, port: int) -> str:
        path = "/socket.io/" if self.protocol == "socketio" else "/"
        return f"ws://{host}:{port}{path}"


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
        ),
        ServerInfo(
            "socketio-asgi",
            "servers.socketio_asgi",
            "socketio",
            "python-socketio ASGIApp under uvicorn",
        ),
    )
}

LOOPS = ("asyncio", "uvloop")
