"""What each server's libraries ship for the settings the fairness contract decides: the record
of the shipped tier (``--tier shipped``), beside the contract's own (the equalised tier), for
the harness to write into meta.json.

Pure: it reads installed versions and the libraries' signatures, and starts nothing. Where a
library exposes a default (a keyword's default value), it is read from there, so that a new
version cannot leave a record stale; where it does not (what a driver passes, Node's packages,
which Python cannot inspect), the value is written here with a comment naming where it comes
from, and the record's ``source`` says so. The servers' tests check both kinds against the
running servers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from servers.common import FAIRNESS

Value = str | int | float | bool | list[str] | None
Record = dict[str, Value]

NODE_MODULES = Path(__file__).resolve().parent / "node" / "node_modules"

# Every record has these; a Socket.IO server's has SOCKETIO_FIELDS too. Durations in seconds,
# None where there is no such thing (no pings: no ping timeout either).
COMMON_FIELDS = (
    "tier", "server", "library", "library_version", "libraries", "compression",
    "max_message_bytes", "websocket_ping_interval_s", "websocket_ping_timeout_s", "source",
)  # fmt: skip
SOCKETIO_FIELDS = (
    "engineio_ping_interval_s", "engineio_ping_timeout_s", "socketio_transports",
    "socketio_allow_upgrades", "socketio_async_handlers",
)  # fmt: skip

# permessage-deflate as a record says it: accepted whenever a client offers it, or never.
DEFLATE = "permessage-deflate"
OFF = "off"

# The Node packages' defaults below were read in these versions' sources; a record made with
# another version installed says so in its ``source``.
NODE_CHECKED = {"ws": "8.23.0", "engine.io": "6.6.13", "socket.io": "4.8.4"}


# --- Reading versions and defaults ------------------------------------------------------------


def python_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def node_version(package: str) -> str | None:
    """The version in servers/node/node_modules/<package>/package.json (None: not installed)."""
    try:
        manifest = json.loads((NODE_MODULES / package / "package.json").read_text())
        return str(manifest["version"])
    except (OSError, ValueError, KeyError):
        return None


def defaults(callable_: Callable[..., Any]) -> dict[str, Any]:
    """Each keyword's default value in ``callable_``'s signature (a class: its constructor)."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(callable_).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _incoming_limit(max_size: Any) -> int | None:
    """websockets' ``max_size``: bytes, or a pair (message, fragment) since 15.0."""
    limit = max_size[0] if isinstance(max_size, tuple) else max_size
    return None if limit is None else int(limit)


def _libraries(versions: dict[str, str | None]) -> list[str]:
    return [f"{name} {version or 'not installed'}" for name, version in versions.items()]


def _record(server: str, versions: dict[str, str | None], **settings: Value) -> Record:
    library, version = next(iter(versions.items()))
    return {
        "tier": "shipped", "server": server, "library": library, "library_version": version,
        "libraries": _libraries(versions), **settings,
    }  # fmt: skip


def _node_source(versions: dict[str, str | None], where: str) -> str:
    stale = [
        f"{name} {version} installed, checked in {NODE_CHECKED[name]}"
        for name, version in versions.items()
        if version != NODE_CHECKED[name]
    ]
    checked = f"written from {where} (Node's defaults cannot be read from Python)"
    return checked + (f"; CHECK AGAIN: {', '.join(stale)}" if stale else "")


# --- Python: python-engineio and python-socketio, shared by both Socket.IO hosts --------------


def _engineio_settings() -> dict[str, Value]:
    import engineio
    import socketio

    engine = defaults(engineio.AsyncServer)
    # transports=None means "all of valid_transports" (engineio/base_server.py, __init__).
    transports = engine["transports"] or engineio.AsyncServer.valid_transports
    return {
        "engineio_ping_interval_s": _seconds(engine["ping_interval"]),
        "engineio_ping_timeout_s": _seconds(engine["ping_timeout"]),
        "socketio_transports": list(transports),
        "socketio_allow_upgrades": bool(engine["allow_upgrades"]),
        "socketio_async_handlers": bool(defaults(socketio.AsyncServer)["async_handlers"]),
    }


def _engineio_max_bytes() -> int:
    import engineio

    # Checked on every incoming packet, WebSocket included (engineio/async_socket.py).
    limit: int = defaults(engineio.AsyncServer)["max_http_buffer_size"]
    return limit


# --- One function per server ------------------------------------------------------------------


def _websockets() -> Record:
    from websockets.asyncio import server

    serve = defaults(server.serve)
    return _record(
        "websockets", {"websockets": python_version("websockets")},
        compression=OFF if serve["compression"] is None else DEFLATE,
        max_message_bytes=_incoming_limit(serve["max_size"]),
        websocket_ping_interval_s=_seconds(serve["ping_interval"]),
        websocket_ping_timeout_s=_seconds(serve["ping_timeout"]),
        source="inspect.signature(websockets.asyncio.server.serve)",
    )  # fmt: skip


def _aiohttp() -> Record:
    from aiohttp import web

    response = defaults(web.WebSocketResponse)
    heartbeat = _seconds(response["heartbeat"])
    return _record(
        "aiohttp", {"aiohttp": python_version("aiohttp")},
        compression=DEFLATE if response["compress"] else OFF,
        max_message_bytes=response["max_msg_size"],
        websocket_ping_interval_s=heartbeat,
        # aiohttp waits heartbeat / 2 for the pong (web_ws.py, WebSocketResponse.__init__).
        websocket_ping_timeout_s=None if heartbeat is None else heartbeat / 2,
        source="inspect.signature(aiohttp.web.WebSocketResponse)",
    )  # fmt: skip


def _socketio_aiohttp() -> Record:
    from aiohttp import web

    # engineio's aiohttp driver builds WebSocketResponse(max_msg_size=max_http_buffer_size) and
    # nothing else (engineio/async_drivers/aiohttp.py, WebSocket.__call__; read in 4.15.1), so
    # aiohttp's defaults decide compression and pings.
    response = defaults(web.WebSocketResponse)
    heartbeat = _seconds(response["heartbeat"])
    versions = {
        name: python_version(name) for name in ("python-socketio", "python-engineio", "aiohttp")
    }
    return _record(
        "socketio-aiohttp", versions,
        compression=DEFLATE if response["compress"] else OFF,
        max_message_bytes=_engineio_max_bytes(),
        websocket_ping_interval_s=heartbeat,
        websocket_ping_timeout_s=None if heartbeat is None else heartbeat / 2,
        **_engineio_settings(),
        source="inspect.signature of engineio.AsyncServer, socketio.AsyncServer and "
        "aiohttp.web.WebSocketResponse; engineio's aiohttp driver passes only max_msg_size "
        "(its source, read in python-engineio 4.15.1)",
    )  # fmt: skip


def _socketio_asgi() -> Record:
    import uvicorn

    config = defaults(uvicorn.Config)
    versions = {
        name: python_version(name)
        for name in ("python-socketio", "python-engineio", "uvicorn", "websockets")
    }
    return _record(
        "socketio-asgi", versions,
        compression=DEFLATE if config["ws_per_message_deflate"] else OFF,
        # uvicorn takes frames up to ws_max_size, python-engineio then refuses packets above
        # its own limit: the smaller one is the server's.
        max_message_bytes=min(config["ws_max_size"], _engineio_max_bytes()),
        websocket_ping_interval_s=_seconds(config["ws_ping_interval"]),
        websocket_ping_timeout_s=_seconds(config["ws_ping_timeout"]),
        **_engineio_settings(),
        source="inspect.signature of uvicorn.Config, engineio.AsyncServer and "
        "socketio.AsyncServer",
    )  # fmt: skip


def _node_ws() -> Record:
    versions = {"ws": node_version("ws")}
    # ws/lib/websocket-server.js, WebSocketServer's constructor defaults: perMessageDeflate
    # false, maxPayload 100 * 1024 * 1024; ws sends no pings unless the application does.
    return _record(
        "node-ws", versions,
        compression=OFF,
        max_message_bytes=100 * 1024 * 1024,
        websocket_ping_interval_s=None,
        websocket_ping_timeout_s=None,
        source=_node_source(versions, "ws/lib/websocket-server.js"),
    )  # fmt: skip


def _node_socketio() -> Record:
    versions = {name: node_version(name) for name in ("socket.io", "engine.io", "ws")}
    # engine.io/build/server.js, BaseServer's constructor defaults: pingInterval 25000,
    # pingTimeout 20000, maxHttpBufferSize 1e6 (engine.io's ws maxPayload too), transports
    # ["polling", "websocket"], allowUpgrades true, perMessageDeflate unset (off); Engine.IO's
    # own heartbeat, no WebSocket pings. socket.io calls each event's listener as the packet is
    # decoded, in no task of its own: python-socketio's async_handlers=False is the nearest.
    return _record(
        "node-socketio", versions,
        compression=OFF,
        max_message_bytes=1_000_000,
        websocket_ping_interval_s=None,
        websocket_ping_timeout_s=None,
        engineio_ping_interval_s=25.0,
        engineio_ping_timeout_s=20.0,
        socketio_transports=["polling", "websocket"],
        socketio_allow_upgrades=True,
        socketio_async_handlers=False,
        source=_node_source(versions, "engine.io/build/server.js and ws/lib/websocket-server.js"),
    )  # fmt: skip


# By the names of bench/catalog.py's SERVERS.
_SHIPPED: dict[str, Callable[[], Record]] = {
    "websockets": _websockets,
    "aiohttp": _aiohttp,
    "socketio-aiohttp": _socketio_aiohttp,
    "socketio-asgi": _socketio_asgi,
    "node-ws": _node_ws,
    "node-socketio": _node_socketio,
}
NAMES = tuple(_SHIPPED)


def shipped_settings(name: str) -> Record:
    """What server ``name``'s libraries ship, as installed: compression, limits, pings, and for a
    Socket.IO server its Engine.IO heartbeat, transports and handlers (COMMON_FIELDS and
    SOCKETIO_FIELDS). ValueError for a name that is not a server's."""
    if name not in _SHIPPED:
        raise ValueError(f"no server named {name!r}; the servers are {', '.join(NAMES)}")
    return _SHIPPED[name]()


def equalised_settings() -> Record:
    """The fairness contract's values for the same fields (every server's, in the equalised
    tier), but the library's (which the harness records from each server's versions)."""
    return {
        "tier": "equalised",
        "compression": FAIRNESS.compression,
        "max_message_bytes": FAIRNESS.max_message_bytes,
        "websocket_ping_interval_s": FAIRNESS.websocket_ping_interval_s,
        # No pings, so no timeout for their pongs.
        "websocket_ping_timeout_s": None,
        "engineio_ping_interval_s": FAIRNESS.engineio_ping_interval_s,
        "engineio_ping_timeout_s": FAIRNESS.engineio_ping_timeout_s,
        "socketio_transports": list(FAIRNESS.socketio_transports),
        # servers/socketio_common.py and socketio.js allow the upgrade when websocket is allowed.
        "socketio_allow_upgrades": "websocket" in FAIRNESS.socketio_transports,
        "socketio_async_handlers": FAIRNESS.socketio_async_handlers,
        "source": "servers.common.FairnessContract",
    }
