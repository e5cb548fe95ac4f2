"""Socket.IO echo server (python-socketio) on uvicorn (ASGI), with the fairness contract (or, in
the shipped tier, python-socketio's and uvicorn's defaults)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import socketio
import uvicorn

from servers.common import (
    FAIRNESS,
    Tier,
    listening_socket,
    run_server,
    scale_out,
    tier,
    tls_context,
)
from servers.socketio_common import (
    create_socketio_server,
    start_socketio_broker,
    stop_socketio_server,
)

# --- Settings from the fairness contract -----------------------------------------------------

# The Socket.IO settings (transports, heartbeat, message size, handlers) live in
# servers/socketio_common.py, shared with the aiohttp host; these are uvicorn's.
ASYNC_MODE = "asgi"
# uvicorn negotiates permessage-deflate by default; the contract turns it off.
PER_MESSAGE_DEFLATE = FAIRNESS.compression != "off"
# uvicorn pings every 20 s by default; a ping inside a run would be traffic the others lack.
PING_INTERVAL_S = FAIRNESS.websocket_ping_interval_s
# uvicorn's default is 16 MiB; the contract's limit is the same on every server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes
# Not part of the contract: the longest a stop waits for connections that are still open
# (uvicorn's default is to wait for ever).
SHUTDOWN_TIMEOUT_S = 2

# --- Settings by tier ------------------------------------------------------------------------

# shipped: none of them is passed, so uvicorn's defaults decide (permessage-deflate accepted,
# WebSocket pings every 20 s answered within 20 s, 16 MiB frames, under python-engineio's own
# 1,000,000-byte limit; servers/shipped.py reads them).
SETTINGS: dict[Tier, dict[str, Any]] = {
    "equalised": {
        "ws_per_message_deflate": PER_MESSAGE_DEFLATE,
        "ws_ping_interval": PING_INTERVAL_S,
        "ws_max_size": MAX_MESSAGE_BYTES,
    },
    "shipped": {},
}


# --- Handler ---------------------------------------------------------------------------------

# The echo handler is servers.socketio_common.create_socketio_server's ``echo``.


# --- Start -----------------------------------------------------------------------------------


def tls_settings(context: ssl.SSLContext | None) -> dict[str, Any]:
    """uvicorn's arguments for serving with ``context`` (None: none, plain TCP). uvicorn makes
    its own context from file names; its factory hook hands it common's instead, the one every
    Python server serves with."""
    if context is None:
        return {}
    chosen = context

    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return chosen

    return {"ssl_context_factory": factory}


@dataclass(frozen=True)
class RunningSocketioAsgi:
    port: int
    sio: socketio.AsyncServer
    server: uvicorn.Server
    sock: socket.socket
    main_loop: asyncio.Task[None]

    async def close(self) -> None:
        await stop_socketio_server(self.sio)
        self.server.should_exit = True
        await self.main_loop
        await self.server.shutdown(sockets=[self.sock])


async def start(
    host: str, port: int, transports: tuple[str, ...] | None = FAIRNESS.socketio_transports
) -> RunningSocketioAsgi:
    settings = scale_out()
    sio = create_socketio_server(
        ASYNC_MODE, transports, settings.worker_id, settings.broker_url, tier()
    )
    # Subscribed before listening: a client that connects after READY misses nothing.
    await start_socketio_broker(sio)
    config = uvicorn.Config(
        socketio.ASGIApp(sio),  # routes /socket.io/
        # websockets' Sans-I/O protocol is the core the websockets server runs on, so this arm
        # differs from that one by uvicorn and ASGI, not by WebSocket code; httptools parses HTTP.
        # Named in both tiers: they are which server this is (and what uvicorn 0.55's "auto"
        # picks here anyway).
        ws="websockets-sansio",
        http="httptools",
        **SETTINGS[tier()],
        **tls_settings(tls_context()),
        # What the harness needs in both tiers: a bounded clean stop, nothing on stdout.
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        lifespan="off",
        log_level="warning",
        access_log=False,
        # The event loop is common.run_server's (asyncio or uvloop), not uvicorn's choice.
        loop="none",
        # uvicorn listens on the socket it is given again, with its own backlog (2048).
        backlog=FAIRNESS.listen_backlog,
    )
    # Server.serve() would install its own SIGINT/SIGTERM handlers over common.run_server's, so
    # its steps are taken one by one instead: load, startup, main loop as a task, shutdown.
    # serve() also creates the lifespan handler that startup() and shutdown() use.
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    # Binding the socket here makes port 0 work and tells us the port that was picked.
    try:
        sock = listening_socket(host, port, reuse_port=settings.reuse_port)
    except BaseException:
        await stop_socketio_server(sio)
        raise
    await server.startup(sockets=[sock])
    main_loop = asyncio.create_task(server.main_loop())
    return RunningSocketioAsgi(
        port=sock.getsockname()[1], sio=sio, server=server, sock=sock, main_loop=main_loop
    )


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(
        start,
        socketio=True,
        scales_out=True,
        tiers=True,
        description="Socket.IO echo server (python-socketio ASGI app under uvicorn).",
    )


if __name__ == "__main__":
    raise SystemExit(main())
