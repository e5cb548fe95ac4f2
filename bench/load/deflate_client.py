"""The generator's connection in the shipped tier: it offers permessage-deflate as a browser does
and, where the server accepts, compresses every message it sends and inflates what arrives.

A subclass of ``EchoConnection``, so the equalised tier's hot path is untouched: this one reads
every frame through the same general steps (inflate, then the echo check by whole reply or by
head and constant tail), one branch more per message than the specialised handlers. Where the
server refused the offer, it sends and reads plain frames like its parent.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import Any

from picows import WSFrame, WSMsgType, WSTransport

from bench.load.client import TEXT, EchoConnection, Tally
from bench.protocol.deflate import ClientCodec, DeflateError, MessageAssembler, parse_response
from bench.protocol.exchange import Exchange

CONTINUATION = WSMsgType.CONTINUATION
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
EXTENSIONS_HEADER = "Sec-WebSocket-Extensions"


class DeflateEchoConnection(EchoConnection):
    """An ``EchoConnection`` that offered permessage-deflate. ``agreement`` is what the server
    answered (``Agreement.describe()``), "" when it accepted no extension."""

    def __init__(
        self, exchange: Exchange, tally: Tally, closed_loop: bool, upgrade: bool = False
    ) -> None:
        super().__init__(exchange, tally, closed_loop, upgrade)
        self.compress: Any = None  # Deflater.compress once negotiated
        self.assembler: MessageAssembler | None = None
        self.message_type = TEXT  # the current message's type, from its first frame

    def on_ws_connected(self, transport: WSTransport) -> None:
        header = transport.response.headers.get(EXTENSIONS_HEADER)
        try:
            agreement = parse_response(header)
        except DeflateError as exc:
            # RFC 6455: a client fails the connection on an extension it did not offer.
            transport.disconnect(graceful=False)
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"extension refused: {exc}"))
            return
        if agreement is not None:
            codec = ClientCodec.from_agreement(agreement, self.max_message_bytes)
            self.agreement = agreement.describe()
            self.compress = codec.deflater.compress
            self.assembler = MessageAssembler(codec.inflater)
        super().on_ws_connected(transport)

    # --- receiving -------------------------------------------------------------------------

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        msg_type = frame.msg_type
        if msg_type not in _DATA:
            if msg_type is not WSMsgType.CLOSE and msg_type is not WSMsgType.PONG:
                self._not_an_echo(msg_type, frame.get_payload_as_bytes())
            return
        self.frames_received += 1
        assembler = self.assembler
        if assembler is None:
            data: bytes | None = frame.get_payload_as_bytes()
        else:
            try:
                data = assembler.feed(
                    frame.get_payload_as_memoryview(), frame.fin, frame.rsv1,
                    msg_type is CONTINUATION,
                )  # fmt: skip
            except DeflateError as exc:
                # The compression context is broken from here on: the connection is failed,
                # as RFC 7692 asks, and what it still awaited counts as missing.
                self.unexpected += 1
                self.tally.note_error(f"bad compressed message: {exc}")
                self.assembler = None
                self.disconnected = True
                transport.disconnect(graceful=False)
                return
        if msg_type is not CONTINUATION:
            self.message_type = msg_type
        if data is None:  # more frames of this message to come
            return
        if self.by_head:
            head_end = len(data) - self.reply_tail_bytes
            key = data[:head_end] if data[head_end:] == self.reply_tail else None
        else:
            key = data
        sent_ns = self.outstanding.pop(key, None)
        if sent_ns is None or key is None:
            self._not_an_echo(self.message_type, data)
            return
        if self.has_reply_preamble and not self._take_reply_preamble(key):
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)
        if self.closed_loop:
            self.send(now)

    # --- sending ---------------------------------------------------------------------------

    def send(self, t_ns: int) -> None:
        """As ``EchoConnection.send`` (the Socket.IO binary placeholder first), each message
        compressed when deflate was negotiated."""
        if t_ns >= self.window_end_ns:
            return
        seq = self.next_seq
        self.next_seq = seq + 1
        body, key = self.body_and_key(seq, t_ns)
        self.outstanding[key] = t_ns
        transport = self.transport
        assert transport is not None and self.preamble is not None
        compress = self.compress
        if compress is None:
            transport.send(TEXT, self.preamble(seq))
            transport.send(self.body_type, body)
        else:
            transport.send(TEXT, compress(self.preamble(seq)), rsv1=True)
            transport.send(self.body_type, compress(body), rsv1=True)
        if t_ns >= self.window_start_ns:
            self.sent += 1

    def _send_body(self, t_ns: int) -> None:
        if t_ns >= self.window_end_ns:
            return
        seq = self.next_seq
        self.next_seq = seq + 1
        body, key = self.body_and_key(seq, t_ns)
        self.outstanding[key] = t_ns
        compress = self.compress
        if compress is None:
            self.transport.send(self.body_type, body)  # type: ignore[union-attr]
        else:
            self.transport.send(self.body_type, compress(body), rsv1=True)  # type: ignore[union-attr]
        if t_ns >= self.window_start_ns:
            self.sent += 1
