"""A raw WebSocket echo and fan-out server that misbehaves on purpose, to prove the generator's
accounting.

``python -m tests.integration.faulty_server --fault drop|duplicate|corrupt`` echoes every
message (and broadcasts every published one to every receiver, on the fan-out paths of the
real servers) except those whose sequence number (the payload's first 8 hex digits) ends in 3
modulo 10: those are dropped, sent twice, or sent with one byte changed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import WSMsgType, web


def is_victim(data: bytes) -> bool:
    return int(data[:8], 16) % 10 == 3


async def main(fault: str) -> None:
    receivers: set[web.WebSocketResponse] = set()

    async def send(ws: web.WebSocketResponse, data: str) -> None:
        if not is_victim(data.encode()):
            await ws.send_str(data)
        elif fault == "duplicate":
            await ws.send_str(data)
            await ws.send_str(data)
        elif fault == "corrupt":
            await ws.send_str(data[:-1] + ("a" if data[-1] != "a" else "b"))

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await send(ws, message.data)
        return ws

    async def receive_broadcasts(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        receivers.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            receivers.discard(ws)
        return ws

    async def publish(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                for receiver in tuple(receivers):
                    await send(receiver, message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    app.router.add_get("/fanout", receive_broadcasts)
    app.router.add_get("/publish", publish)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=("drop", "duplicate", "corrupt"), required=True)
    asyncio.run(main(parser.parse_args().fault))
