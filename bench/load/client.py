"""The generator's connections on picows: handshake, send, verify each echo, record its latency.

``EchoConnection.on_ws_frame`` and ``EchoConnection.send`` are the hot path: per message they
do one clock read, one dictionary pop (which, with a comparison of the reply's constant tail
for large payloads, verifies the echo byte for byte and finds its send time), one array
append, and in closed loop one template fill and one send. Each connection picks the variants
of both for its shape once, at set-up, instead of testing per message what never changes for
it. Everything else (Engine.IO pings, errors) is handled off that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from time import monotonic_ns
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.load.recorder import LatencyRecorder
from bench.metrics.wire import WireBytes
from bench.protocol import socketio as sio
from bench.protocol.exchange import HEADER_BYTES, Exchange, FrameBuilder, parse_header
from bench.tls import describe

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
_PING = sio.EIO_PING.encode()
_PONG = sio.EIO_PONG.encode()
_NOOP = sio.EIO_NOOP.encode()
MAX_ERROR_SAMPLES = 20
# From this payload size on, outstanding messages are keyed by their reply's head and the
# constant tail is compared through a memoryview of picows's buffer, neither copied nor hashed;
# below it, hashing a copy of the whole frame costs less than the memoryview's set-up (the
# two cost about the same near 2 KiB on this project's 2-core VM, docs/measurements.md).
HEAD_KEY_MIN_BYTES = 1024


class Tally:
    """What all connections of one worker share: the measurement window and the recorders."""

    def __init__(self) -> None:
        # Until the start signal, every send is outside any window.
        self.window_start_ns = 2**62
        self.window_end_ns = 2**62
        self.latency = LatencyRecorder()
        self.send_lag = LatencyRecorder()
        self.error_samples: list[str] = []
        # Time-sliced closed loop: echoes counted when each measured slice began.
        self.round_marks: list[int] = []

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(text)


class Accounting:
    """One connection's bookkeeping, whatever its client stack: messages still awaiting their
    echo (keyed by the exact expected reply, valued by intended send time), counters, and the
    measurement window."""

    def __init__(self, tally: Tally, closed_loop: bool) -> None:
        self.tally = tally
        self.record = tally.latency.append
        self.closed_loop = closed_loop
        # Messages sent from window_start_ns on are measured; no message is sent from
        # window_end_ns on (in a time-sliced run, the driver moves it to each slice's end).
        self.window_start_ns = tally.window_start_ns
        self.window_end_ns = tally.window_end_ns
        self.outstanding: dict[Any, int] = {}
        self.next_seq = 0
        self.sent = 0
        self.received = 0
        self.unexpected = 0
        self.disconnected = False
        self.closing = False

    def start_window(self, start_ns: int, end_ns: int) -> None:
        self.window_start_ns = start_ns
        self.window_end_ns = end_ns

    def window_outstanding(self) -> int:
        start = self.window_start_ns
        return sum(1 for t in self.outstanding.values() if t >= start)

    def describe(self, data: bytes, payload_bytes: int) -> str:
        """Say what an unexpected payload-bearing frame was, for the error samples."""
        if len(data) >= HEADER_BYTES:
            try:
                seq, _ = parse_header(data[-payload_bytes:])
                if seq < self.next_seq:
                    return f"duplicate or altered echo of message {seq}"
            except ValueError:
                pass
        return f"{len(data)} bytes: {data[:60]!r}"


class EchoConnection(WSListener, Accounting):
    """One client connection. Raw WebSocket, or Socket.IO over the WebSocket transport, either
    opened on it or (``upgrade``) upgrading a session opened over long-polling."""

    def __init__(
        self, exchange: Exchange, tally: Tally, closed_loop: bool, upgrade: bool = False
    ) -> None:
        WSListener.__init__(self)
        Accounting.__init__(self, tally, closed_loop)
        self.transport: WSTransport | None = None
        builder = FrameBuilder(exchange)
        self.preamble = builder.preamble
        self.exchange = exchange
        self.body_type = BINARY if exchange.payload_kind == "binary" else TEXT
        # Socket.IO binary echoes arrive as a placeholder text frame, then the attachment.
        self.expected_reply_preamble = builder.reply_preamble
        self.has_reply_preamble = builder.reply_preamble is not None
        self.reply_preamble: bytes | None = None
        # The key of an outstanding message: its whole expected reply, or (large payloads) the
        # reply's head, the reply being the head followed by ``reply_tail``.
        self.by_head = exchange.payload_bytes >= HEAD_KEY_MIN_BYTES
        self.body_and_key = builder.body_and_head if self.by_head else builder.body_and_reply
        # A bytearray: ``bytearray == memoryview`` is one memcmp, while ``bytes == memoryview``
        # falls back to memoryview's comparison, item by item (100 times slower at 16 KiB).
        self.reply_tail = bytearray(builder.reply_tail)
        self.reply_tail_bytes = len(builder.reply_tail)
        if self.preamble is None:
            self.send = self._send_body  # type: ignore[method-assign]
        if type(self).on_ws_frame is EchoConnection.on_ws_frame and not self.has_reply_preamble:
            # (A subclass that reads frames its own way keeps its on_ws_frame.)
            self.on_ws_frame = self._echo_handler(closed_loop)  # type: ignore[method-assign]
        self.socketio = exchange.protocol == "socketio"
        # Socket.IO: -1 awaits the upgrade probe's reply, 0 the open packet, 1 the namespace
        # connect reply; 2 is ready.
        self.upgrade = upgrade and self.socketio
        self.handshake_step = (-1 if self.upgrade else 0) if self.socketio else 2
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # WebSocket frames received, for the wire counters (bench.metrics.wire); the frames
        # sent follow from the messages sent (``frames_sent``), so the send path counts none.
        self.frames_received = 0
        # Connect storms: bytes of the connection's set-up that went over another socket (the
        # default path's polling GET; None when unreadable), and its HTTP requests.
        self.earlier_wire: WireBytes | None = WireBytes(0, 0)
        self.http_requests: int | None = None
        # The largest message accepted (``connect`` sets the plan's frame limit): a
        # subclass that decompresses bounds its output by it.
        self.max_message_bytes = 1 << 20
        # What was negotiated: the Sec-WebSocket-Extensions agreement ("" for none).
        self.agreement = ""

    # --- picows callbacks ------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.socketio:
            self.ready.set_result(None)
        elif self.upgrade:
            transport.send(TEXT, sio.EIO_PROBE.encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Verify an echo, time it, and in closed loop send the next message. This general
        form serves Socket.IO binary (two frames a message, where a test per frame is noise);
        ``__init__`` replaces it with the specialisation for every other shape."""
        now = monotonic_ns()
        self.frames_received += 1
        if self.by_head:
            view = frame.get_payload_as_memoryview()
            head_end = len(view) - self.reply_tail_bytes
            key = view[:head_end].tobytes() if self.reply_tail == view[head_end:] else None
        else:
            key = frame.get_payload_as_bytes()
        sent_ns = self.outstanding.pop(key, None)
        if sent_ns is None or key is None:
            self._not_an_echo(frame.msg_type, frame.get_payload_as_bytes())
            return
        if self.has_reply_preamble and not self._take_reply_preamble(key):
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)
        if self.closed_loop:
            self.send(now)

    # The specialisations of on_ws_frame: whole frame or head and tail, open or closed loop.
    # They differ from one another in one or two lines; each is spelt out because a call to a
    # shared helper would cost more per message than the tests they save.

    def _echo_handler(self, closed_loop: bool) -> Any:
        if self.by_head:
            return self._echo_by_head_then_send if closed_loop else self._echo_by_head
        return self._echo_then_send if closed_loop else self._echo

    def _echo(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        self.frames_received += 1
        data = frame.get_payload_as_bytes()
        sent_ns = self.outstanding.pop(data, None)
        if sent_ns is None:
            self._not_an_echo(frame.msg_type, data)
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)

    def _echo_then_send(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        self.frames_received += 1
        data = frame.get_payload_as_bytes()
        sent_ns = self.outstanding.pop(data, None)
        if sent_ns is None:
            self._not_an_echo(frame.msg_type, data)
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)
        self.send(now)

    def _echo_by_head(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        self.frames_received += 1
        view = frame.get_payload_as_memoryview()  # picows's buffer, valid during this call
        head_end = len(view) - self.reply_tail_bytes
        # The tail first: a reply with a wrong tail must leave its message outstanding.
        if self.reply_tail != view[head_end:]:
            self._not_an_echo(frame.msg_type, view.tobytes())
            return
        sent_ns = self.outstanding.pop(view[:head_end].tobytes(), None)
        if sent_ns is None:
            self._not_an_echo(frame.msg_type, view.tobytes())
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)

    def _echo_by_head_then_send(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        self.frames_received += 1
        view = frame.get_payload_as_memoryview()
        head_end = len(view) - self.reply_tail_bytes
        if self.reply_tail != view[head_end:]:
            self._not_an_echo(frame.msg_type, view.tobytes())
            return
        sent_ns = self.outstanding.pop(view[:head_end].tobytes(), None)
        if sent_ns is None:
            self._not_an_echo(frame.msg_type, view.tobytes())
            return
        if sent_ns >= self.window_start_ns:
            self.received += 1
            self.record(now - sent_ns)
        self.send(now)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closing:
            self.disconnected = True
            self.tally.note_error("connection closed by the server during the run")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    # --- sending ---------------------------------------------------------------------------

    def send(self, t_ns: int) -> None:
        """Send the next message, stamped with intended send time ``t_ns``. (This form sends
        the Socket.IO binary placeholder first; ``__init__`` replaces it with ``_send_body``
        for every other shape.)"""
        if t_ns >= self.window_end_ns:
            return
        seq = self.next_seq
        self.next_seq = seq + 1
        body, key = self.body_and_key(seq, t_ns)
        self.outstanding[key] = t_ns
        transport = self.transport
        transport.send(TEXT, self.preamble(seq))  # type: ignore[misc, union-attr]
        transport.send(self.body_type, body)  # type: ignore[union-attr]
        if t_ns >= self.window_start_ns:
            self.sent += 1

    def _send_body(self, t_ns: int) -> None:
        if t_ns >= self.window_end_ns:
            return
        seq = self.next_seq
        self.next_seq = seq + 1
        body, key = self.body_and_key(seq, t_ns)
        self.outstanding[key] = t_ns
        self.transport.send(self.body_type, body)  # type: ignore[union-attr]
        if t_ns >= self.window_start_ns:
            self.sent += 1

    # --- off the hot path ------------------------------------------------------------------

    def _not_an_echo(self, msg_type: WSMsgType, data: bytes) -> None:
        if msg_type is TEXT and self.socketio:
            if data == _PING:  # Engine.IO heartbeat: answer, it is not a message.
                self.transport.send(TEXT, _PONG)  # type: ignore[union-attr]
                return
            if data == _NOOP:  # flushed to an upgraded session in place of a pending poll
                return
            if self.handshake_step < 2:
                self._handshake(data)
                return
            if self.has_reply_preamble and self.reply_preamble is None:
                self.reply_preamble = data
                return
        if msg_type is WSMsgType.CLOSE or msg_type is WSMsgType.PONG:
            return
        self.unexpected += 1
        self.tally.note_error(
            f"unexpected frame ({self.describe(data, self.exchange.payload_bytes)})"
        )

    def _take_reply_preamble(self, key: bytes) -> bool:
        """Whether the placeholder frame before this attachment (whose key starts with its
        header) was the expected one; it is consumed either way."""
        preamble, self.reply_preamble = self.reply_preamble, None
        seq, _ = parse_header(key)
        expected = self.expected_reply_preamble(seq)  # type: ignore[misc]
        if preamble == expected:
            return True
        self.unexpected += 1
        self.tally.note_error(f"attachment without its placeholder packet (got {preamble!r:.80})")
        return False

    def _handshake(self, data: bytes) -> None:
        try:
            text = data.decode()
            if self.handshake_step == -1:
                if text != sio.EIO_PROBE_REPLY:
                    raise sio.ProtocolError(f"expected the probe's reply, got {text!r:.40}")
                self.handshake_step = 1
                self.transport.send(TEXT, sio.EIO_UPGRADE.encode())  # type: ignore[union-attr]
                self.transport.send(TEXT, sio.encode_connect().encode())  # type: ignore[union-attr]
            elif self.handshake_step == 0:
                sio.decode_open(text)
                self.handshake_step = 1
                self.transport.send(TEXT, sio.encode_connect().encode())  # type: ignore[union-attr]
            else:
                sio.decode_connect_reply(text)
                self.handshake_step = 2
                if not self.ready.done():  # not if an earlier frame already failed it
                    self.ready.set_result(None)
        except (UnicodeDecodeError, sio.ProtocolError) as exc:
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"Socket.IO handshake failed: {exc}"))

    @property
    def frames_sent(self) -> int:
        """Every message is sent as the same frames (a preamble for Socket.IO binary)."""
        return self.next_seq * self.exchange.frames_per_message

    def tls(self) -> tuple[str, str]:
        """``(tls_version, cipher)`` of a wss:// connection, ``("", "")`` otherwise."""
        if self.transport is None:
            return "", ""
        ssl_object = self.transport.underlying_transport.get_extra_info("ssl_object")
        return ("", "") if ssl_object is None else describe(ssl_object)

    def tcp_sockets(self) -> list[Any]:
        """The connection's socket (asyncio's TransportSocket), for its TCP_INFO counters."""
        if self.transport is None:
            return [None]
        return [self.transport.underlying_transport.get_extra_info("socket")]

    def start_closing(self) -> None:
        """Send a normal close frame; the server answers it and closes the connection."""
        self.closing = True
        if self.transport is not None and not self.disconnected:
            self.transport.send_close(WSCloseCode.OK)

    async def close(self, timeout_s: float) -> None:
        """Close handshake, then drop the TCP connection if the server did not in time."""
        self.start_closing()
        if self.transport is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.transport.wait_disconnected(), timeout_s)
        self.transport.disconnect(graceful=False)


# Linux: bind() reserves only the address; the port is picked at connect(), per destination.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def connected_from(source: tuple[str, int], host: str, port: int) -> socket.socket:
    """A TCP socket from ``source`` (a loopback address, port 0) connected to ``host:port``.

    Written by hand because asyncio's ``local_addr`` binds port 0 at once, so the kernel must
    find a port free on that address for every destination, TIME_WAIT ones included: with tens
    of thousands of connections (and the last run's TIME_WAITs) each bind() searched longer,
    down to 70 set-ups a second at 50,000 connections. IP_BIND_ADDRESS_NO_PORT defers the pick
    to connect(), which shares ports between destinations and reuses loopback TIME_WAITs
    (tcp_tw_reuse)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # not Linux: a plain bind, as asyncio's
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind(source)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(
    url: str,
    exchange: Exchange,
    tally: Tally,
    closed_loop: bool,
    timeout_s: float,
    max_frame_bytes: int,
    local_addr: tuple[str, int] | None = None,
    upgrade: bool = False,
    listener_class: type[EchoConnection] = EchoConnection,
    extra_headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> EchoConnection:
    """Open one connection and finish its handshake (Socket.IO: open packet, namespace; or,
    with ``upgrade``, the probe that moves a long-polling session, named in ``url``, to this
    WebSocket, then the namespace). ``listener_class``: ``EchoConnection`` or a subclass;
    ``extra_headers`` go with the upgrade request; ``ssl_context`` verifies a wss:// server."""
    kwargs: dict[str, Any] = {}
    if extra_headers:
        kwargs["extra_headers"] = extra_headers
    if ssl_context is not None:
        kwargs["ssl_context"] = ssl_context
    if local_addr is not None:
        source = local_addr

        async def bound_socket(parsed: Any) -> socket.socket:
            return await connected_from(source, parsed.host, parsed.port)

        kwargs["socket_factory"] = bound_socket

    def make_listener() -> EchoConnection:
        listener = listener_class(exchange, tally, closed_loop, upgrade)
        listener.max_message_bytes = max_frame_bytes
        return listener

    async def establish() -> EchoConnection:
        _, listener = await ws_connect(
            make_listener,
            url,
            websocket_handshake_timeout=timeout_s,
            enable_auto_ping=False,
            enable_auto_pong=True,
            max_frame_size=max_frame_bytes,
            **kwargs,
        )
        assert isinstance(listener, EchoConnection)
        await listener.ready
        return listener

    return await asyncio.wait_for(establish(), timeout_s)
