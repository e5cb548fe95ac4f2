"""A raw WebSocket echo server that misbehaves on purpose, to prove the generator's accounting.

``python -m tests.integration.faulty_server --fault drop|duplicate|corrupt`` echoes every
message except those whose sequence number (the payload's first 8 hex digits) ends in 3 modulo
10: those are dropped, sent twice, or sent back with one byte changed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import WSMsgType, web


def is_victim(data: bytes) -> bool:
    return int(data[:8], 16) % 10 == 3


async def main(fault: str) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            if not is_victim(message.data.encode()):
                await ws.send_str(message.data)
            elif fault == "duplicate":
                await ws.send_str(message.data)
                await ws.send_str(message.data)
            elif fault == "corrupt":
                await ws.send_str(message.data[:-1] + ("a" if message.data[-1] != "a" else "b"))
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
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
