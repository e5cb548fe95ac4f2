"""Plain WebSocket echo server on websockets' asyncio implementation, with the fairness contract."""

from __future__ import annotations

from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

from servers.common import FAIRNESS, run_server

# --- Settings from the fairness contract -----------------------------------------------------

# websockets negotiates permessage-deflate by default; the contract turns it off everywhere.
COMPRESSION = None if FAIRNESS.compression == "off" else "deflate"
# websockets pings every 20 s by default; a ping inside a run would be traffic the others lack.
PING_INTERVAL_S = FAIRNESS.websocket_ping_interval_s
# Larger messages are refused with close code 1009, like on every other server.
MAX_MESSAGE_BYTES = FAIRNESS.max_message_bytes


# --- Handler ---------------------------------------------------------------------------------


async def echo(connection: ServerConnection) -> None:
    """Send every message back unchanged: text as text, binary as binary."""
    # websockets does no routing: every path is served; the harness connects to "/".
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosedError:
        # A client that leaves without a closing handshake (or sends too much) is routine under
        # load; aiohttp ends its handler quietly then, and so does this one, instead of logging
        # a traceback per connection to stderr.
        pass


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
        echo,
        host,
        port,
        compression=COMPRESSION,
        ping_interval=PING_INTERVAL_S,
        max_size=MAX_MESSAGE_BYTES,
    )
    return RunningWebsockets(port=server.sockets[0].getsockname()[1], server=server)


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    return run_server(start, "Plain WebSocket echo server (websockets, asyncio implementation).")


if __name__ == "__main__":
    raise SystemExit(main())
