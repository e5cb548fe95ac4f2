"""A minimal hand-written picows echo client: the yardstick the generator is held against.

It does what any closed-loop echo client must do and nothing more: send a fixed payload, and on
each frame send it again. No verification, no timestamps, no recording. ``wsbench overhead``
runs it and the generator against the same server in one run, so the generator's own cost is
measured rather than assumed. ``python -m bench.load.reference`` follows the worker's protocol
(a ``WorkerPlan`` line, "connected", ``GO <start_ns>``, "report") and reports the messages
echoed in the measured window; it uses only the plan's URL, connections, payload and times.
"""

from __future__ import annotations

import asyncio
import sys
from time import monotonic_ns

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.load.engine import emit, read_start_signal
from bench.load.plan import WorkerPlan


class MinimalEcho(WSListener):
    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload
        self.count = 0
        self.running = True

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.count += 1
        if self.running:
            transport.send(WSMsgType.TEXT, self.payload)


async def run(
    url: str, connections: int, payload_bytes: int, warmup_s: float, duration_s: float
) -> None:
    payload = b"x" * payload_bytes
    clients: list[MinimalEcho] = []
    for _ in range(connections):
        _, listener = await asyncio.wait_for(ws_connect(lambda: MinimalEcho(payload), url), 10)
        assert isinstance(listener, MinimalEcho)
        clients.append(listener)
    emit("connected", connections=connections, connect_s=0.0)
    start_ns = await read_start_signal(timeout_s=60.0)
    await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / 1e9))
    for client in clients:
        client.transport.send(WSMsgType.TEXT, payload)
    await asyncio.sleep(warmup_s)
    counted_at_start = sum(client.count for client in clients)
    await asyncio.sleep(duration_s)
    counted = sum(client.count for client in clients) - counted_at_start
    for client in clients:
        client.running = False
    await asyncio.sleep(0.2)
    for client in clients:
        client.transport.disconnect()
    emit("report", messages=counted, duration_s=duration_s)


def main() -> int:
    plan = WorkerPlan.from_json(sys.stdin.readline())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            run(plan.url, plan.connections, plan.payload_bytes, plan.warmup_s, plan.duration_s)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
