"""Echo servers as their teams ship them: each library's defaults, none of the fairness contract.

``python -m tests.integration.shipped_server KIND --port P`` prints ``READY <port>`` once
listening, like the harness's own servers, and leaves on SIGTERM. KIND is one of:

- ``websockets``: ``websockets.asyncio.server.serve`` with its defaults (permessage-deflate
  offered and accepted, pings every 20 s, 1 MiB messages);
- ``aiohttp``: a ``WebSocketResponse()`` with its defaults (accepts permessage-deflate);
- ``socketio-aiohttp``: python-socketio's ``AsyncServer`` attached to an aiohttp app with its
  defaults (transports polling and websocket, pings every 25 s, compression accepted);
- ``socketio-asgi``: python-socketio's ``ASGIApp`` under uvicorn with uvicorn's defaults
  (``ws_per_message_deflate=True``).

Nothing here is tuned: these are what ``wsbench run --target`` meets in the field.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from typing import Any

KINDS = ("websockets", "aiohttp", "socketio-aiohttp", "socketio-asgi")


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _socketio_server(async_mode: str) -> Any:
    """python-socketio's defaults, only the host chosen; the echo a team would write."""
    import socketio

    sio = socketio.AsyncServer(async_mode=async_mode)

    async def echo(sid: str, data: Any) -> None:
        await sio.emit("echo", data, to=sid)

    sio.on("echo", echo)
    return sio


async def serve(kind: str, port: int, stop: asyncio.Event) -> None:
    sock = _listening_socket(port)
    ready = f"READY {sock.getsockname()[1]}"
    if kind == "websockets":
        from websockets.asyncio.server import ServerConnection
        from websockets.asyncio.server import serve as ws_serve

        async def ws_echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        async with ws_serve(ws_echo, sock=sock):
            print(ready, flush=True)
            await stop.wait()
        return
    if kind in ("aiohttp", "socketio-aiohttp"):
        from aiohttp import WSMsgType, web

        app = web.Application()
        if kind == "aiohttp":

            async def aiohttp_echo(request: web.Request) -> web.WebSocketResponse:
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                async for message in ws:
                    if message.type is WSMsgType.TEXT:
                        await ws.send_str(message.data)
                    elif message.type is WSMsgType.BINARY:
                        await ws.send_bytes(message.data)
                return ws

            app.router.add_get("/", aiohttp_echo)
        else:
            _socketio_server("aiohttp").attach(app)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(ready, flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        return
    import socketio
    import uvicorn

    config = uvicorn.Config(socketio.ASGIApp(_socketio_server("asgi")), log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    print(ready, flush=True)
    await stop.wait()
    server.should_exit = True
    await task


async def main(kind: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(kind, port, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.kind, args.port))
