"""Plain WebSocket echo and fan-out server on aiohttp's WebSocketResponse, with the fairness
contract."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiohttp import WSMessage, WSMsgType, web

from servers.common import FAIRNESS, burn_handicap, run_server

# --- Settings from the fairness contract -----------------------------------------------------

# aiohttp negotiates permessage-deflate by default (since 2.3.0); the contract turns it off.
COMPRESS = FAIRNESS.compression != "off"
# aiohttp sends no pings unless asked; None keeps it that way (it still answers client pings).
HEARTBEAT_S = FAIRNESS.websocket_ping_interval_s
# aiohttp's default is 4 MiB; the contract's limit is the same on every server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes
# Not part of the contract: the longest a stop waits for handlers that are still running
# (aiohttp's default is 60 s).
SHUTDOWN_TIMEOUT_S = 2.0


# --- Handlers --------------------------------------------------------------------------------

# On stop, aiohttp waits for running handlers, and an echo handler runs until its client leaves;
# so open connections are tracked and closed with 1001 (going away), as websockets' server does.
OPEN_WEBSOCKETS = web.AppKey("open_websockets", set[web.WebSocketResponse])
RECEIVERS = web.AppKey("receivers", set[web.WebSocketResponse])


async def open_websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        compress=COMPRESS, heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES
    )
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
    """A receiver: gets every published message until it leaves."""
    ws = await open_websocket(request)
    request.app[OPEN_WEBSOCKETS].add(ws)
    request.app[RECEIVERS].add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        request.app[RECEIVERS].discard(ws)
        request.app[OPEN_WEBSOCKETS].discard(ws)
    return ws


async def publish(request: web.Request) -> web.WebSocketResponse:
    """Send every message to every receiver. aiohttp has no broadcast: like its users, this
    loops over the connections, waiting for each send in turn."""
    ws = await open_websocket(request)
    request.app[OPEN_WEBSOCKETS].add(ws)
    try:
        receivers = request.app[RECEIVERS]
        async for message in ws:
            for receiver in tuple(receivers):
                # A receiver that left meanwhile is skipped, not a reason to stop.
                with contextlib.suppress(ConnectionResetError):
                    await send(receiver, message)
    finally:
        request.app[OPEN_WEBSOCKETS].discard(ws)
    return ws


async def close_open_websockets(app: web.Application) -> None:
    for ws in app[OPEN_WEBSOCKETS].copy():
        await ws.close(code=1001, message=b"server shutdown")


# --- Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningAiohttp:
    port: int
    runner: web.AppRunner

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(host: str, port: int) -> RunningAiohttp:
    app = web.Application()
    app[OPEN_WEBSOCKETS] = set[web.WebSocketResponse]()
    app[RECEIVERS] = set[web.WebSocketResponse]()
    app.on_shutdown.append(close_open_websockets)
    app.router.add_get(FAIRNESS.fanout_path, receive_broadcasts)
    app.router.add_get(FAIRNESS.publish_path, publish)
    app.router.add_get("/", echo)
    # access_log=None: no line per request (stdout carries only READY).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return RunningAiohttp(port=runner.addresses[0][1], runner=runner)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(start, "Plain WebSocket echo and fan-out server (aiohttp WebSocketResponse).")


if __name__ == "__main__":
    raise SystemExit(main())
