"""Plain WebSocket echo and fan-out server on aiohttp's WebSocketResponse, with the fairness
contract (or, in the shipped tier, WebSocketResponse's defaults)."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from servers.broker import Broker
from servers.common import (
    FAIRNESS,
    Tier,
    burn_handicap,
    run_server,
    scale_out,
    tier,
    tls_context,
    worker_announcement,
)

# --- Settings from the fairness contract -----------------------------------------------------

# aiohttp negotiates permessage-deflate by default (since 2.3.0); the contract turns it off.
COMPRESS = FAIRNESS.compression != "off"
# aiohttp sends no pings unless asked; None keeps it that way (it still answers client pings).
HEARTBEAT_S = FAIRNESS.websocket_ping_interval_s
# aiohttp's default is 4 MiB; the contract's limit is the same on every server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes

# --- Settings by tier ------------------------------------------------------------------------

# shipped: none of them is passed, so WebSocketResponse's defaults decide (permessage-deflate
# accepted, no pings, 4 MiB messages; servers/shipped.py reads them).
SETTINGS: dict[Tier, dict[str, Any]] = {
    "equalised": {
        "compress": COMPRESS,
        "heartbeat": HEARTBEAT_S,
        "max_msg_size": MAX_MESSAGE_BYTES,
    },
    "shipped": {},
}
# Not part of the contract: the longest a stop waits for handlers that are still running
# (aiohttp's default is 60 s).
SHUTDOWN_TIMEOUT_S = 2.0


# --- Handlers --------------------------------------------------------------------------------

# On stop, aiohttp waits for running handlers, and an echo handler runs until its client leaves;
# so open connections are tracked and closed with 1001 (going away), as websockets' server does.
OPEN_WEBSOCKETS = web.AppKey("open_websockets", set[web.WebSocketResponse])
RECEIVERS = web.AppKey("receivers", set[web.WebSocketResponse])
# Scale-out: the text sent first on both fan-out paths (--worker-id), the broker (--broker-url).
ANNOUNCEMENT: web.AppKey[str | None] = web.AppKey("announcement")
BROKER: web.AppKey[Broker | None] = web.AppKey("broker")
# The tier's WebSocketResponse arguments, picked once at start.
WEBSOCKET_SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("websocket_settings")


async def open_websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(**request.app[WEBSOCKET_SETTINGS])
    await ws.prepare(request)
    return ws


async def send(ws: web.WebSocketResponse, message: WSMessage) -> None:
    if message.type is WSMsgType.TEXT:
        await ws.send_str(message.data)
    elif message.type is WSMsgType.BINARY:
        await ws.send_bytes(message.data)


async def echo(request: web.Request) -> web.WebSocketResponse:
    """Send every message back unchanged: text as text, binary as binary."""
    ws = await open_websocket(request)
    request.app[OPEN_WEBSOCKETS].add(ws)
    try:
        async for message in ws:
            burn_handicap()
            await send(ws, message)
    finally:
        request.app[OPEN_WEBSOCKETS].discard(ws)
    return ws


async def receive_broadcasts(request: web.Request) -> web.WebSocketResponse:
    """A receiver: gets every published message until it leaves (after the worker
    announcement, with --worker-id)."""
    ws = await open_websocket(request)
    request.app[OPEN_WEBSOCKETS].add(ws)
    if (announcement := request.app[ANNOUNCEMENT]) is not None:
        await ws.send_str(announcement)
    request.app[RECEIVERS].add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        request.app[RECEIVERS].discard(ws)
        request.app[OPEN_WEBSOCKETS].discard(ws)
    return ws


async def publish(request: web.Request) -> web.WebSocketResponse:
    """Send every message to every receiver. With a broker, every message also goes to the
    other processes' receivers through it."""
    ws = await open_websocket(request)
    request.app[OPEN_WEBSOCKETS].add(ws)
    try:
        if (announcement := request.app[ANNOUNCEMENT]) is not None:
            await ws.send_str(announcement)
        receivers, broker = request.app[RECEIVERS], request.app[BROKER]
        async for message in ws:
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                await broadcast(receivers, message.data)
                if broker is not None:
                    await broker.publish(message.data)
    finally:
        request.app[OPEN_WEBSOCKETS].discard(ws)
    return ws


async def broadcast(receivers: set[web.WebSocketResponse], message: str | bytes) -> None:
    """aiohttp has no broadcast: like its users, this loops over the connections, waiting for
    each send in turn. Also what the broker delivers, from the other processes."""
    for receiver in tuple(receivers):
        # A receiver that left meanwhile is skipped, not a reason to stop.
        with contextlib.suppress(ConnectionResetError):
            if isinstance(message, str):
                await receiver.send_str(message)
            else:
                await receiver.send_bytes(message)


async def close_open_websockets(app: web.Application) -> None:
    for ws in app[OPEN_WEBSOCKETS].copy():
        await ws.close(code=1001, message=b"server shutdown")


# --- Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningAiohttp:
    port: int
    runner: web.AppRunner
    broker: Broker | None

    async def close(self) -> None:
        await self.runner.cleanup()
        if self.broker is not None:
            await self.broker.close()


async def start(host: str, port: int) -> RunningAiohttp:
    settings = scale_out()
    url, worker_id = settings.broker_url, settings.worker_id
    app = web.Application()
    app[WEBSOCKET_SETTINGS] = SETTINGS[tier()]
    app[OPEN_WEBSOCKETS] = set[web.WebSocketResponse]()
    app[RECEIVERS] = set[web.WebSocketResponse]()
    # Subscribed before listening: a receiver that connects after READY misses nothing.
    deliver = functools.partial(broadcast, app[RECEIVERS])
    app[BROKER] = broker = None if url is None else await Broker.start(url, deliver)
    app[ANNOUNCEMENT] = None if worker_id is None else worker_announcement(worker_id).decode()
    app.on_shutdown.append(close_open_websockets)
    app.router.add_get(FAIRNESS.fanout_path, receive_broadcasts)
    app.router.add_get(FAIRNESS.publish_path, publish)
    app.router.add_get("/", echo)
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
        await runner.cleanup()
        if broker is not None:
            await broker.close()
        raise
    return RunningAiohttp(port=runner.addresses[0][1], runner=runner, broker=broker)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(
        start,
        "Plain WebSocket echo and fan-out server (aiohttp WebSocketResponse).",
        scales_out=True,
        tiers=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
