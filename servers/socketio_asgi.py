"""Socket.IO echo server (python-socketio) on uvicorn (ASGI), with the fairness contract."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import socketio
import uvicorn

from servers.common import FAIRNESS, listening_socket, run_server, scale_out
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


# --- Handler ---------------------------------------------------------------------------------

# The echo handler is servers.socketio_common.create_socketio_server's ``echo``.


# --- Start -----------------------------------------------------------------------------------


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
    host: str, port: int, transports: tuple[str, ...] = FAIRNESS.socketio_transports
) -> RunningSocketioAsgi:
    settings = scale_out()
    sio = create_socketio_server(ASYNC_MODE, transports, settings.worker_id, settings.broker_url)
    # Subscribed before listening: a client that connects after READY misses nothing.
    await start_socketio_broker(sio)
    config = uvicorn.Config(
        socketio.ASGIApp(sio),  # routes /socket.io/
        # websockets' Sans-I/O protocol is the core the websockets server runs on, so this arm
        # differs from that one by uvicorn and ASGI, not by WebSocket code; httptools parses HTTP.
        ws="websockets-sansio",
        http="httptools",
        ws_per_message_deflate=PER_MESSAGE_DEFLATE,
        ws_ping_interval=PING_INTERVAL_S,
        ws_max_size=MAX_MESSAGE_BYTES,
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
        description="Socket.IO echo server (python-socketio ASGI app under uvicorn).",
    )


if __name__ == "__main__":
    raise SystemExit(main())
