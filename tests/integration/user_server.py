"""A small WebSocket server the harness did not write, the kind a team would measure with
``wsbench run --server-cmd``: ``python -m tests.integration.user_server --port N``.

It shares nothing with ``servers/``: its own argument parser, no READY line, no ``--loop``,
aiohttp's defaults (permessage-deflate on, which the fairness probe records). It echoes text
and binary messages on every path but two: a connection to /fanout receives every message
published on a connection to /publish (the paths the harness's fan-out mode uses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from aiohttp import WSMsgType, web

RECEIVERS = web.AppKey("receivers", set[web.WebSocketResponse])


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def receive(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[RECEIVERS].add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        request.app[RECEIVERS].discard(ws)
    return ws


async def publish(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            for receiver in tuple(request.app[RECEIVERS]):
                with contextlib.suppress(ConnectionResetError):
                    await receiver.send_str(message.data)
    return ws


async def serve(port: int) -> None:
    app = web.Application()
    app[RECEIVERS] = set()
    app.router.add_get("/fanout", receive)
    app.router.add_get("/publish", publish)
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"user_server listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
