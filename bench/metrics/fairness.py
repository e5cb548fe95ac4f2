"""Checks the fairness contract against a running server, before any load is sent.

One probe connection *offers* permessage-deflate and records what the server accepts: every
server under test must negotiate no extension. For Socket.IO servers the probe also reads the
Engine.IO open packet, to record the heartbeat interval and message limit actually in force.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.protocol import socketio as sio

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


@dataclass(frozen=True)
class ProbeResult:
    extensions_negotiated: str  # the server's Sec-WebSocket-Extensions answer; "" when none
    engineio_ping_interval_ms: int | None = None
    engineio_max_payload_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _OpenPacketListener(WSListener):
    def __init__(self) -> None:
        super().__init__()
        self.first_text: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT and not self.first_text.done():
            self.first_text.set_result(frame.get_payload_as_utf8_text())


async def probe(url: str, protocol: str, timeout_s: float = 5.0) -> ProbeResult:
    """Probe the WebSocket URL the generator will open (see ``bench.target.websocket_url``)."""
    transport, listener = await asyncio.wait_for(
        ws_connect(
            _OpenPacketListener,
            url,
            extra_headers={"Sec-WebSocket-Extensions": DEFLATE_OFFER},
            websocket_handshake_timeout=timeout_s,
        ),
        timeout_s,
    )
    try:
        extensions = transport.response.headers.get("Sec-WebSocket-Extensions", "")
        if protocol != "socketio":
            return ProbeResult(extensions)
        try:
            assert isinstance(listener, _OpenPacketListener)
            first = await asyncio.wait_for(listener.first_text, timeout_s)
        except TimeoutError:
            raise sio.ProtocolError(
                f"no Engine.IO open packet within {timeout_s:.0f} s: not a Socket.IO server?"
            ) from None
        opened = sio.decode_open(first)
        return ProbeResult(extensions, opened.ping_interval_ms, opened.max_payload_bytes)
    finally:
        transport.send_close(WSCloseCode.OK)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transport.wait_disconnected(), timeout_s)
        transport.disconnect(graceful=False)


def violations(result: ProbeResult) -> list[str]:
    """What the probe saw that breaks the contract; empty when the server is fair."""
    found = []
    if result.extensions_negotiated:
        found.append(f"negotiated extensions {result.extensions_negotiated!r} (must be none)")
    return found
