"""Plain WebSocket echo and fan-out server on websockets' asyncio implementation, with the
fairness contract."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosedError

from servers.common import FAIRNESS, burn_handicap, run_server

# --- Settings from the fairness contract -----------------------------------------------------

# websockets negotiates permessage-deflate by default; the contract turns it off everywhere.
COMPRESSION = None if FAIRNESS.compression == "off" else "deflate"
# websockets pings every 20 s by default; a ping inside a run would be traffic the others lack.
PING_INTERVAL_S = FAIRNESS.websocket_ping_interval_s
# Larger messages are refused with close code 1009, like on every other server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes


# --- Handlers --------------------------------------------------------------------------------

RECEIVERS: set[ServerConnection] = set()


async def route(connection: ServerConnection) -> None:
    # websockets does no routing of its own: the fan-out paths are picked here, and every other
    # path gets the echo (the harness connects to "/").
    assert connection.request is not None
    path = urlsplit(connection.request.path).path
    try:
        if path == FAIRNESS.fanout_path:
            await receive_broadcasts(connection)
        elif path == FAIRNESS.publish_path:
            await publish(connection)
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


async def receive_broadcasts(connection: ServerConnection) -> None:
    """A receiver: gets every published message until it leaves."""
    RECEIVERS.add(connection)
    try:
        await connection.wait_closed()
    finally:
        RECEIVERS.discard(connection)


async def publish(connection: ServerConnection) -> None:
    """Send every message to every receiver with websockets' broadcast(), which writes to each
    connection without waiting for it (a slow receiver does not hold up the others)."""
    async for message in connection:
        broadcast(RECEIVERS, message)


# --- Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningWebsockets:
    port: int
    server: Server

    async def close(self) -> None:
        # Closes open connections with 1001 (going away) and waits for their handlers.
        self.server.close()
        await self.server.wait_closed()


async def start(host: str, port: int) -> RunningWebsockets:
    server = await serve(
        route,
        host,
        port,
        compression=COMPRESSION,
        ping_interval=PING_INTERVAL_S,
        max_size=MAX_MESSAGE_BYTES,
    )
    return RunningWebsockets(port=server.sockets[0].getsockname()[1], server=server)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(
        start, "Plain WebSocket echo and fan-out server (websockets, asyncio implementation)."
    )


if __name__ == "__main__":
    raise SystemExit(main())
