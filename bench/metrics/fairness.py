"""Checks the fairness contract against a running server, before any load is sent.

The generator never offers a WebSocket extension on its measuring connections, so nothing is
compressed on the wire whatever the server would do. The probe finds out what the server
*would* do: one connection offers permessage-deflate as a browser does and records the answer
(every server the harness starts must negotiate none: the contract; a server someone else
started is measured anyway, with its answer in the row). For Socket.IO servers a second
connection, offering nothing like the measuring ones, reads the Engine.IO open packet to
record the heartbeat interval and message limit actually in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import asdict, dataclass
from typing import Any

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from bench.protocol import socketio as sio

# What browsers offer (and websockets' and aiohttp's clients with compression on).
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


class ProbeRefused(Exception):
    """The server refused the probe, or answered it with something the generator cannot use;
    the message is one line saying what."""


@dataclass(frozen=True)
class ProbeResult:
    extensions_negotiated: str  # the server's Sec-WebSocket-Extensions answer; "" when none
    # What the probe offered in its Sec-WebSocket-Extensions header.
    extensions_offered_by_probe: str = DEFLATE_OFFER
    engineio_ping_interval_ms: int | None = None
    engineio_max_payload_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _FirstFrameListener(WSListener):
    def __init__(self) -> None:
        super().__init__()
        self.first: asyncio.Future[tuple[WSMsgType, bytes]] = (
            asyncio.get_running_loop().create_future()
        )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY) and not self.first.done():
            self.first.set_result((frame.msg_type, frame.get_payload_as_bytes()))


def _refusal(url: str, offered: str, exc: BaseException) -> ProbeRefused:
    reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
    if isinstance(exc, WSError):  # it answered, but not with a WebSocket
        what = f"a WebSocket handshake offering {offered!r}" if offered else "a WebSocket handshake"
        reason = f"the server refused {what}: {reason}"
    return ProbeRefused(f"cannot open a WebSocket to {url}: {reason}")


@contextlib.asynccontextmanager
async def _connection(
    url: str, offered: str, timeout_s: float, ssl_context: ssl.SSLContext | None = None
) -> Any:
    headers = {"Sec-WebSocket-Extensions": offered} if offered else None
    try:
        transport, listener = await asyncio.wait_for(
            ws_connect(
                _FirstFrameListener,
                url,
                ssl_context=ssl_context,
                extra_headers=headers,
                websocket_handshake_timeout=timeout_s,
                # A compressed first frame is data to the probe, not a reason to drop the link.
                disconnect_on_exception=False,
            ),
            timeout_s,
        )
    except (OSError, WSError, TimeoutError) as exc:
        raise _refusal(url, offered, exc) from None
    try:
        yield transport, listener
    finally:
        transport.send_close(WSCloseCode.OK)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transport.wait_disconnected(), timeout_s)
        transport.disconnect(graceful=False)


async def _open_packet(
    url: str, timeout_s: float, ssl_context: ssl.SSLContext | None = None
) -> sio.OpenPacket:
    """Engine.IO's open packet, read on a connection that offers no extension (as the
    measuring connections do), so it arrives as plain text whatever the server would
    negotiate."""
    async with _connection(url, "", timeout_s, ssl_context) as (_, listener):
        try:
            kind, payload = await asyncio.wait_for(listener.first, timeout_s)
        except TimeoutError:
            raise ProbeRefused(
                f"{url} sent no Engine.IO open packet within {timeout_s:.0f} s: "
                "not a Socket.IO server?"
            ) from None
    try:
        if kind is not WSMsgType.TEXT:
            raise sio.ProtocolError("a binary frame")
        return sio.decode_open(payload.decode())
    except (UnicodeDecodeError, sio.ProtocolError) as exc:
        raise ProbeRefused(
            f"{url}: the first frame is not an Engine.IO open packet ({exc}): "
            "not a Socket.IO server?"
        ) from None


async def probe(
    url: str, protocol: str, timeout_s: float = 5.0, ssl_context: ssl.SSLContext | None = None
) -> ProbeResult:
    """Probe the WebSocket URL the generator will open (see ``bench.target.websocket_url``);
    ``ProbeRefused`` (one line) when the server cannot be measured there. ``ssl_context``:
    how to verify a wss:// server."""
    opened = await _open_packet(url, timeout_s, ssl_context) if protocol == "socketio" else None
    async with _connection(url, DEFLATE_OFFER, timeout_s, ssl_context) as (transport, _):
        extensions = transport.response.headers.get("Sec-WebSocket-Extensions", "")
    if opened is None:
        return ProbeResult(extensions)
    return ProbeResult(
        extensions,
        engineio_ping_interval_ms=opened.ping_interval_ms,
        engineio_max_payload_bytes=opened.max_payload_bytes,
    )


def violations(result: ProbeResult) -> list[str]:
    """What the probe saw that breaks the contract; empty when the server is fair."""
    found = []
    if result.extensions_negotiated:
        found.append(f"negotiated extensions {result.extensions_negotiated!r} (must be none)")
    return found
