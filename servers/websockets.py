"""Plain WebSocket echo and fan-out server on websockets' asyncio implementation, with the
fairness contract (or, in the shipped tier, serve()'s defaults)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosedError

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

# websockets negotiates permessage-deflate by default; the contract turns it off everywhere.
COMPRESSION = None if FAIRNESS.compression == "off" else "deflate"
# websockets pings every 20 s by default; a ping inside a run would be traffic the others lack.
PING_INTERVAL_S = FAIRNESS.websocket_ping_interval_s
# Larger messages are refused with close code 1009, like on every other server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes

# --- Settings by tier ------------------------------------------------------------------------

# shipped: none of them is passed, so serve()'s defaults decide (permessage-deflate accepted,
# a ping every 20 s answered within 20 s, 1 MiB messages; servers/shipped.py reads them).
SETTINGS: dict[Tier, dict[str, Any]] = {
    "equalised": {
        "compression": COMPRESSION,
        "ping_interval": PING_INTERVAL_S,
        "max_size": MAX_MESSAGE_BYTES,
    },
    "shipped": {},
}


# --- Handlers --------------------------------------------------------------------------------

RECEIVERS: set[ServerConnection] = set()


async def route(
    connection: ServerConnection, announcement: str | None, broker: Broker | None
) -> None:
    # websockets does no routing of its own: the fan-out paths are picked here, and every other
    # path gets the echo (the harness connects to "/").
    assert connection.request is not None
    path = urlsplit(connection.request.path).path
    try:
        if path == FAIRNESS.fanout_path:
            await receive_broadcasts(connection, announcement)
        elif path == FAIRNESS.publish_path:
            await publish(connection, announcement, broker)
        else:
            await echo(connection)
    except ConnectionClosedError:
        # A client that leaves without a closing handshake (or sends too much) is routine under
        # load; aiohttp ends its handler quietly then, and so does this one, instead of logging
        # a traceback per connection to stderr.
        pass


async def echo(connection: ServerConnection) -> None:
    """Send every message back unchanged: text as text, binary as binary."""
    async for message in connection:
        burn_handicap()
        await connection.send(message)


async def receive_broadcasts(connection: ServerConnection, announcement: str | None) -> None:
    """A receiver: gets every published message until it leaves (after the worker
    announcement, with --worker-id)."""
    if announcement is not None:
        await connection.send(announcement)
    RECEIVERS.add(connection)
    try:
        await connection.wait_closed()
    finally:
        RECEIVERS.discard(connection)


async def publish(
    connection: ServerConnection, announcement: str | None, broker: Broker | None
) -> None:
    """Send every message to every receiver with websockets' broadcast(), which writes to each
    connection without waiting for it (a slow receiver does not hold up the others). With a
    broker, every message also goes to the other processes' receivers through it."""
    if announcement is not None:
        await connection.send(announcement)
    if broker is None:
        async for message in connection:
            broadcast(RECEIVERS, message)
    else:
        async for message in connection:
            broadcast(RECEIVERS, message)
            await broker.publish(message)


async def deliver(message: str | bytes) -> None:
    """What another process published, from the broker."""
    broadcast(RECEIVERS, message)


# --- Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningWebsockets:
    port: int
    server: Server
    broker: Broker | None

    async def close(self) -> None:
        # Closes open connections with 1001 (going away) and waits for their handlers.
        self.server.close()
        await self.server.wait_closed()
        if self.broker is not None:
            await self.broker.close()


async def start(host: str, port: int) -> RunningWebsockets:
    settings = scale_out()
    # Subscribed before listening: a receiver that connects after READY misses nothing.
    url, worker_id = settings.broker_url, settings.worker_id
    broker = None if url is None else await Broker.start(url, deliver)
    announcement = None if worker_id is None else worker_announcement(worker_id).decode()
    try:
        # What the harness needs in both tiers: the address, port sharing, the contract's accept
        # queue and TLS (ssl=None: plain TCP, create_server's default).
        server = await serve(
            functools.partial(route, announcement=announcement, broker=broker),
            host,
            port,
            **SETTINGS[tier()],
            reuse_port=settings.reuse_port,
            backlog=FAIRNESS.listen_backlog,
            ssl=tls_context(),
        )
    except BaseException:
        if broker is not None:
            await broker.close()
        raise
    return RunningWebsockets(port=server.sockets[0].getsockname()[1], server=server, broker=broker)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(
        start,
        "Plain WebSocket echo and fan-out server (websockets, asyncio implementation).",
        scales_out=True,
        tiers=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
