"""Socket.IO echo server (python-socketio) hosted by aiohttp, with the fairness contract (or, in
the shipped tier, python-socketio's and aiohttp's defaults)."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from servers.common import FAIRNESS, Tier, run_server, scale_out, tier, tls_context
from servers.socketio_common import (
    create_socketio_server,
    start_socketio_broker,
    stop_socketio_server,
)

# --- Settings from the fairness contract -----------------------------------------------------

# The Socket.IO settings (transports, heartbeat, message size, handlers) live in
# servers/socketio_common.py, shared with the ASGI host; compression is refused below.
ASYNC_MODE = "aiohttp"
# Not part of the contract: the longest a stop waits for handlers that are still running (a
# client that ignores Engine.IO's close packet keeps its handler alive; aiohttp's default is 60 s).
SHUTDOWN_TIMEOUT_S = 2.0


# --- Handler ---------------------------------------------------------------------------------


@web.middleware
async def refuse_compression(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hide the client's ``Sec-WebSocket-Extensions`` offer, so no extension is negotiated.

    engineio's aiohttp driver builds ``WebSocketResponse(max_msg_size=...)`` without
    ``compress=``, and aiohttp then accepts permessage-deflate whenever a client offers it. The
    contract has compression off, and this is the one place to enforce it without patching
    engineio. It runs once per HTTP request (the WebSocket handshake), never per message.
    """
    if hdrs.SEC_WEBSOCKET_EXTENSIONS not in request.headers:
        return await handler(request)
    headers = request.headers.copy()
    del headers[hdrs.SEC_WEBSOCKET_EXTENSIONS]
    return await handler(request.clone(headers=headers))


# The echo handler itself is servers.socketio_common.create_socketio_server's ``echo``.

# --- Settings by tier ------------------------------------------------------------------------

# shipped: no middleware, so aiohttp accepts permessage-deflate whenever a client offers it, as
# engineio's driver ships (servers/shipped.py).
MIDDLEWARES: dict[Tier, tuple[Middleware, ...]] = {
    "equalised": (refuse_compression,),
    "shipped": (),
}


# --- Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningSocketioAiohttp:
    port: int
    sio: socketio.AsyncServer
    runner: web.AppRunner

    async def close(self) -> None:
        await stop_socketio_server(self.sio)
        await self.runner.cleanup()


async def start(
    host: str, port: int, transports: tuple[str, ...] | None = FAIRNESS.socketio_transports
) -> RunningSocketioAiohttp:
    settings = scale_out()
    sio = create_socketio_server(
        ASYNC_MODE, transports, settings.worker_id, settings.broker_url, tier()
    )
    # Subscribed before listening: a client that connects after READY misses nothing.
    await start_socketio_broker(sio)
    app = web.Application(middlewares=MIDDLEWARES[tier()])
    sio.attach(app)  # routes /socket.io/
    # access_log=None: no line per request (stdout carries only READY).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        await runner.setup()
        # What the harness needs in both tiers: the address, port sharing, the contract's accept
        # queue and TLS (ssl_context=None: plain TCP, TCPSite's default).
        await web.TCPSite(
            runner, host, port, reuse_port=settings.reuse_port, backlog=FAIRNESS.listen_backlog,
            ssl_context=tls_context(),
        ).start()  # fmt: skip
    except BaseException:
        await stop_socketio_server(sio)
        await runner.cleanup()
        raise
    return RunningSocketioAiohttp(port=runner.addresses[0][1], sio=sio, runner=runner)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(
        start,
        "Socket.IO echo server (python-socketio on aiohttp).",
        socketio=True,
        scales_out=True,
        tiers=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
