"""bench.protocol.deflate against the libraries' own permessage-deflate: websockets' sans-I/O
extension and client negotiation, and aiohttp's server-side writer, reader and handshake
helpers, all in memory (an event loop drives aiohttp's writer; no socket is opened)."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any
from unittest import mock

import pytest
from aiohttp._websocket.reader import WebSocketDataQueue
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_websocket import (
    WebSocketReader,
    WebSocketWriter,
    WSMsgType,
    ws_ext_gen,
    ws_ext_parse,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, ProtocolError
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.uri import parse_uri

from bench.protocol import deflate
from bench.protocol.deflate import (
    OFFER,
    Agreement,
    ClientCodec,
    DeflateError,
    Deflater,
    Inflater,
    MessageAssembler,
    parse_response,
)
from tests.conftest import PROPERTY_EXAMPLES

# Modest on purpose: this file should take a few seconds. No example database in the tree.
EXAMPLES = settings(
    max_examples=min(PROPERTY_EXAMPLES, 150),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_SIZE = 1 << 20


def noise(size: int, seed: int = 0) -> bytes:
    """Incompressible bytes, the same on every run."""
    return random.Random(seed).randbytes(size)


# Several kinds at once: text-like repeats (which compress, and whose copies refer back into
# earlier messages), random bytes (which do not), empty messages, and sizes on both sides of
# the Inflater's 2 KiB switch between joining the tail and a second decompress() call.
MESSAGES = [
    b"",
    b"hello",
    b'{"type":"echo","seq":1,"payload":"' + b"x" * 60 + b'"}',
    b'{"type":"echo","seq":2,"payload":"' + b"x" * 60 + b'"}',
    b"",
    noise(3000),
    b"abcdefgh" * 2000,
    noise(100, seed=1),
    b'{"type":"echo","seq":1,"payload":"' + b"x" * 60 + b'"}',
]


def messages() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, and repeated runs of them (compressible, some over 2 KiB)."""
    repeated = st.tuples(st.binary(min_size=1, max_size=40), st.integers(1, 200)).map(
        lambda piece_count: piece_count[0] * piece_count[1]
    )
    return st.binary(max_size=3000) | repeated


@st.composite
def agreements(draw: st.DrawFn) -> Agreement:
    """Any agreement the libraries can encode: their compressors refuse 8 bits."""
    return Agreement(
        server_no_context_takeover=draw(st.booleans()),
        client_no_context_takeover=draw(st.booleans()),
        server_max_window_bits=draw(st.integers(9, 15)),
        client_max_window_bits=draw(st.integers(9, 15)),
    )


# websockets' server side ---------------------------------------------------------------


def websockets_server(agreement: Agreement) -> PerMessageDeflate:
    """websockets' extension as the server side of ``agreement``."""
    return PerMessageDeflate(
        remote_no_context_takeover=agreement.client_no_context_takeover,
        local_no_context_takeover=agreement.server_no_context_takeover,
        remote_max_window_bits=agreement.client_max_window_bits,
        local_max_window_bits=agreement.server_max_window_bits,
    )


def websockets_encode(server: PerMessageDeflate, message: bytes) -> bytes:
    frame = server.encode(Frame(Opcode.BINARY, message))
    assert frame.rsv1
    return bytes(frame.data)


def websockets_decode(server: PerMessageDeflate, payload: bytes) -> bytes:
    frame = server.decode(Frame(Opcode.BINARY, payload, rsv1=True), max_size=MAX_SIZE)
    assert not frame.rsv1
    return bytes(frame.data)


def websockets_client_negotiates(header: str) -> PerMessageDeflate | None:
    """What websockets' own client makes of a response: its extension, or None if refused."""
    client = ClientProtocol(
        parse_uri("ws://localhost/"), extensions=[ClientPerMessageDeflateFactory()]
    )
    try:
        [extension] = client.process_extensions(Headers({"Sec-WebSocket-Extensions": header}))
    except InvalidHandshake:
        return None
    assert isinstance(extension, PerMessageDeflate)
    return extension


def agreement_of(client_side: PerMessageDeflate) -> Agreement:
    return Agreement(
        server_no_context_takeover=client_side.remote_no_context_takeover,
        client_no_context_takeover=client_side.local_no_context_takeover,
        server_max_window_bits=client_side.remote_max_window_bits,
        client_max_window_bits=client_side.local_max_window_bits,
    )


# aiohttp's server side, on an in-memory transport ---------------------------------------

_MASK = b"\x37\xfa\x21\x3d"


def client_frame(
    payload: bytes, *, opcode: int = 0x2, fin: bool = True, rsv1: bool = False
) -> bytes:
    """One masked frame as a client sends it."""
    size = len(payload)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if size < 126:
        header = bytes([first, 0x80 | size])
    elif size < 65536:
        header = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    key = (_MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + _MASK + masked


def server_frames(wire: bytes) -> list[tuple[bool, bool, int, bytes]]:
    """(fin, rsv1, opcode, payload) of each unmasked frame in ``wire``."""
    frames = []
    pos = 0
    while pos < len(wire):
        first, second = wire[pos], wire[pos + 1]
        pos += 2
        assert not second & 0x80, "a server does not mask"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(wire[pos : pos + 2], "big")
            pos += 2
        elif size == 127:
            size = int.from_bytes(wire[pos : pos + 8], "big")
            pos += 8
        frames.append(
            (bool(first & 0x80), bool(first & 0x40), first & 0x0F, wire[pos : pos + size])
        )
        pos += size
    return frames


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False


class AiohttpServer:
    """aiohttp's WebSocketWriter and WebSocketReader configured as its server configures them
    (web_ws.WebSocketResponse), writing to and reading from memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, compress: int, notakeover: bool) -> None:
        protocol = BaseProtocol(loop)
        self._loop = loop
        self._transport = MemoryTransport()
        self._writer = WebSocketWriter(
            protocol, self._transport, use_mask=False, compress=compress, notakeover=notakeover
        )
        self._queue = WebSocketDataQueue(protocol, 1 << 24, loop=loop)
        self._reader = WebSocketReader(self._queue, MAX_SIZE, compress=True, decode_text=False)

    def send(self, message: bytes) -> bytes:
        """The payload of the one compressed frame aiohttp writes for ``message``."""
        self._transport.sent.clear()
        self._loop.run_until_complete(self._writer.send_frame(message, WSMsgType.BINARY))
        [(fin, rsv1, opcode, payload)] = server_frames(bytes(self._transport.sent))
        assert (fin, rsv1, opcode) == (True, True, 0x2)
        return payload

    def receive(self, wire: bytes) -> bytes:
        """The message aiohttp reads from the client frames in ``wire``."""
        self._reader.feed_data(wire)
        message = self._loop.run_until_complete(self._queue.read())
        assert message.type is WSMsgType.BINARY
        assert isinstance(message.data, bytes)
        return message.data


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def aiohttp_answer(offer: str) -> tuple[str | None, int, bool]:
    """aiohttp's server response header to ``offer``, as web_ws.WebSocketResponse builds it,
    and the (compress, notakeover) it then runs with."""
    compress, notakeover = ws_ext_parse(offer, isserver=True)
    if not compress:
        return None, 0, False
    return (
        ws_ext_gen(compress=compress, isserver=True, server_notakeover=notakeover),
        compress,
        notakeover,
    )


# Negotiation -----------------------------------------------------------------------------


def test_offer_is_websockets_default_client_offer() -> None:
    factory = ClientPerMessageDeflateFactory()
    assert build_extension([(factory.name, factory.get_request_params())]) == OFFER
    assert parse_extension(OFFER) == [("permessage-deflate", [("client_max_window_bits", None)])]


WEBSOCKETS_SERVER_CONFIGS = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    *[{"server_max_window_bits": bits} for bits in range(9, 15)],
    *[{"client_max_window_bits": bits} for bits in range(9, 15)],
    {"server_max_window_bits": 9, "client_max_window_bits": 9, "server_no_context_takeover": True},
    {
        "server_max_window_bits": 12,
        "client_max_window_bits": 10,
        "client_no_context_takeover": True,
    },
]


@pytest.mark.parametrize("config", WEBSOCKETS_SERVER_CONFIGS, ids=repr)
def test_websockets_server_negotiates_and_both_directions_decode(config: dict[str, Any]) -> None:
    factory = ServerPerMessageDeflateFactory(**config)
    [(name, offer_params)] = parse_extension(OFFER)
    response_params, server = factory.process_request_params(offer_params, [])
    header = build_extension([(name, response_params)])

    agreement = parse_response(header)

    assert agreement is not None
    assert agreement == Agreement(
        server_no_context_takeover=server.local_no_context_takeover,
        client_no_context_takeover=server.remote_no_context_takeover,
        server_max_window_bits=server.local_max_window_bits,
        client_max_window_bits=server.remote_max_window_bits,
    )
    client_side = websockets_client_negotiates(header)
    assert client_side is not None and agreement_of(client_side) == agreement
    assert parse_response(agreement.describe()) == agreement
    codec = ClientCodec.from_agreement(agreement, MAX_SIZE)
    for message in MESSAGES:
        assert websockets_decode(server, codec.deflater.compress(message)) == message
        assert codec.inflater.decompress(websockets_encode(server, message)) == message


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (OFFER, Agreement(False, False)),
        (
            "permessage-deflate; client_max_window_bits; server_no_context_takeover",
            Agreement(server_no_context_takeover=True, client_no_context_takeover=False),
        ),
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
            Agreement(False, False, server_max_window_bits=10),
        ),
        (
            "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
            Agreement(True, False, server_max_window_bits=9),
        ),
    ],
    ids=repr,
)
def test_aiohttp_server_negotiates_and_both_directions_decode(
    loop: asyncio.AbstractEventLoop, offer: str, expected: Agreement
) -> None:
    header, compress, notakeover = aiohttp_answer(offer)

    agreement = parse_response(header, offered=offer)

    assert agreement == expected
    assert agreement is not None
    server = AiohttpServer(loop, compress, notakeover)
    codec = ClientCodec.from_agreement(agreement, MAX_SIZE)
    for message in MESSAGES:
        payload = codec.deflater.compress(message)
        assert server.receive(client_frame(payload, rsv1=True)) == message
        assert codec.inflater.decompress(server.send(message)) == message


def test_aiohttp_server_declining_is_no_agreement() -> None:
    # aiohttp's server cannot compress with 8 bits, so it drops the extension.
    header, _, _ = aiohttp_answer("permessage-deflate; server_max_window_bits=8")
    assert header is None
    assert parse_response(header) is None


@pytest.mark.parametrize("header", [None, "", "  \t"])
def test_no_header_is_no_agreement(header: str | None) -> None:
    assert parse_response(header) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("permessage-deflate", Agreement(False, False)),
        (
            'permessage-deflate ;server_max_window_bits = "12"; client_max_window_bits="10"',
            Agreement(False, False, server_max_window_bits=12, client_max_window_bits=10),
        ),
        (
            ", permessage-deflate; client_no_context_takeover ,",
            Agreement(server_no_context_takeover=False, client_no_context_takeover=True),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
            Agreement(True, False, server_max_window_bits=8),
        ),
        (
            'permessage-deflate; client_max_window_bits="\\1\\5"',
            Agreement(False, False, client_max_window_bits=15),
        ),
    ],
)
def test_accepted_responses(header: str, expected: Agreement) -> None:
    assert parse_response(header) == expected


REFUSED = [
    "x-webkit-deflate-frame",
    "permessage-deflate, x-webkit-deflate-frame",
    "permessage-deflate, permessage-deflate",
    "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    ",",
    "permessage-deflate;",
    "permessage-deflate x",
    ";permessage-deflate",
    "permessage-deflate; foo",
    "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover=1",
    'permessage-deflate; client_no_context_takeover=""',
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=08",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; server_max_window_bits=10 10",
    "permessage-deflate; server_max_window_bits==10",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits="1 0"',
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; client_max_window_bits=0x0f",
    "permessage-deflate\x00",
]


@pytest.mark.parametrize("header", REFUSED)
def test_refused_responses(header: str) -> None:
    with pytest.raises(DeflateError) as refusal:
        parse_response(header)
    assert "\n" not in str(refusal.value)
    # websockets' own client refuses every one of them too.
    assert websockets_client_negotiates(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "permessage-deflate x",
        "permessage-deflate; server_max_window_bits=10 10",
        ";permessage-deflate",
        'permessage-deflate; server_max_window_bits="10',
        "permessage-deflate; =10",
    ],
)
def test_grammar_errors_say_where(header: str) -> None:
    with pytest.raises(DeflateError, match=r"malformed .* at offset \d+$"):
        parse_response(header)


@pytest.mark.parametrize(
    ("offered", "header"),
    [
        # client_max_window_bits only if offered (RFC 7692 7.1.2.2).
        ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=12",
        ),
        # An offered server_no_context_takeover must be acknowledged (7.1.1.1).
        ("permessage-deflate; server_no_context_takeover", "permessage-deflate"),
        # An offered server_max_window_bits must be answered, with no more (7.1.2.1).
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate"),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12",
        ),
    ],
)
def test_responses_refused_against_the_offer(offered: str, header: str) -> None:
    with pytest.raises(DeflateError):
        parse_response(header, offered=offered)


def test_offered_parameters_that_the_server_leaves_out_still_apply() -> None:
    offered = "permessage-deflate; client_no_context_takeover; client_max_window_bits=11"
    assert parse_response("permessage-deflate", offered=offered) == Agreement(
        False, True, client_max_window_bits=11
    )


@pytest.mark.parametrize(
    "offered",
    [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; foo",
    ],
)
def test_malformed_offer_is_refused(offered: str) -> None:
    with pytest.raises(DeflateError):
        parse_response("permessage-deflate", offered=offered)


def test_describe_gives_the_header_form() -> None:
    assert Agreement(False, False).describe() == "permessage-deflate"
    assert (
        Agreement(False, False, server_max_window_bits=12, client_max_window_bits=12).describe()
        == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    assert (
        Agreement(True, True).describe()
        == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )


@pytest.mark.parametrize("bits", [7, 16])
def test_agreement_refuses_window_bits_out_of_range(bits: int) -> None:
    with pytest.raises(DeflateError):
        Agreement(False, False, server_max_window_bits=bits)
    with pytest.raises(DeflateError):
        Agreement(False, False, client_max_window_bits=bits)


# Window bits 8 ------------------------------------------------------------------------------


def test_client_window_bits_8_is_refused_as_websockets_client_does() -> None:
    factory = ServerPerMessageDeflateFactory(client_max_window_bits=8)
    [(name, offer_params)] = parse_extension(OFFER)
    response_params, _ = factory.process_request_params(offer_params, [])
    header = build_extension([(name, response_params)])
    assert header == "permessage-deflate; client_max_window_bits=8"

    with pytest.raises(DeflateError, match="client_max_window_bits=8"):
        parse_response(header)
    assert websockets_client_negotiates(header) is None
    with pytest.raises(DeflateError):
        Deflater(8, no_context_takeover=False)


def test_server_window_bits_8_is_inflated_within_256_bytes() -> None:
    agreement = parse_response("permessage-deflate; server_max_window_bits=8")
    assert agreement is not None and agreement.server_max_window_bits == 8
    inflater = ClientCodec.from_agreement(agreement, MAX_SIZE).inflater
    # Back-references of 100 bytes fit the window; stored data has none at all.
    near = b"".join(noise(100, seed) * 3 for seed in range(20))
    encoder = zlib.compressobj(wbits=-9)
    payload = encoder.compress(near) + encoder.flush(zlib.Z_SYNC_FLUSH)
    assert inflater.decompress(payload[:-4]) == near
    stored = zlib.compressobj(level=0, wbits=-15)
    payload = stored.compress(near) + stored.flush(zlib.Z_SYNC_FLUSH)
    assert inflater.decompress(payload[:-4]) == near
    # zlib checks the window between messages, not within one: a reference 1,000 bytes back
    # into the previous message is beyond the 256 bytes kept.
    deflater = Deflater(15, no_context_takeover=False)
    far = [deflater.compress(noise(1000)) for _ in range(2)]
    small = Inflater(8, no_context_takeover=False, max_size=MAX_SIZE)
    assert small.decompress(far[0]) == noise(1000)
    with pytest.raises(DeflateError, match="corrupt"):
        small.decompress(far[1])
    large = Inflater(15, no_context_takeover=False, max_size=MAX_SIZE)
    assert [large.decompress(payload) for payload in far] == [noise(1000)] * 2


# Context takeover --------------------------------------------------------------------------


def test_context_takeover_carries_over_and_no_context_takeover_does_not() -> None:
    message = noise(500)
    with_context = Deflater(15, no_context_takeover=False)
    first, second = with_context.compress(message), with_context.compress(message)
    assert len(second) < len(first) // 10  # the copy refers back into the first message

    fresh = Deflater(15, no_context_takeover=True)
    for _ in range(3):
        payload = fresh.compress(message)
        # Each decodes alone, with an empty window.
        assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == message


def test_inflater_keeps_the_window_only_under_context_takeover() -> None:
    deflater = Deflater(15, no_context_takeover=False)
    message = noise(500)
    payloads = [deflater.compress(message), deflater.compress(message)]
    with_context = Inflater(15, no_context_takeover=False, max_size=MAX_SIZE)
    assert [with_context.decompress(payload) for payload in payloads] == [message, message]
    without = Inflater(15, no_context_takeover=True, max_size=MAX_SIZE)
    assert without.decompress(payloads[0]) == message
    with pytest.raises(DeflateError):
        without.decompress(payloads[1])


# Empty messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_empty_message(loop: asyncio.AbstractEventLoop, no_context_takeover: bool) -> None:
    deflater = Deflater(15, no_context_takeover)
    sent = [deflater.compress(message) for message in [b"", b"", b"data", b""]]
    assert sent[0] == sent[1] == sent[3] == b"\x00"  # RFC 7692 7.2.3.6
    inflater = Inflater(15, no_context_takeover, MAX_SIZE)
    assert [inflater.decompress(payload) for payload in sent] == [b"", b"", b"data", b""]
    # An empty payload is taken as the empty message and leaves the window intact.
    assert inflater.decompress(b"") == b""
    assert inflater.decompress(deflater.compress(b"data")) == b"data"
    server = AiohttpServer(loop, 15, no_context_takeover)
    assert server.receive(client_frame(b"\x00", rsv1=True)) == b""
    from_server = Inflater(15, no_context_takeover, MAX_SIZE)
    assert [from_server.decompress(server.send(message)) for message in [b"", b"x", b""]] == [
        b"",
        b"x",
        b"",
    ]


# Limits and corrupt input ------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 5000])  # both sides of the 2 KiB switch
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_output_above_max_size_is_refused(size: int, no_context_takeover: bool) -> None:
    message = noise(size)  # incompressible: the payload is larger than 2 KiB too
    payload = Deflater(15, no_context_takeover=True).compress(message)
    assert Inflater(15, no_context_takeover, max_size=size).decompress(payload) == message
    with pytest.raises(DeflateError, match="max_size"):
        Inflater(15, no_context_takeover, max_size=size - 1).decompress(payload)


def test_a_compression_bomb_is_refused_without_inflating_it() -> None:
    bomb = Deflater(15, no_context_takeover=True).compress(bytes(16 << 20))  # 16 MiB of zeros
    assert len(bomb) < 100_000
    inflater = Inflater(15, no_context_takeover=False, max_size=MAX_SIZE)
    tracemalloc.start()
    try:
        with pytest.raises(DeflateError, match="max_size"):
            inflater.decompress(bomb)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 4 * MAX_SIZE


def test_after_a_refusal_the_shared_window_is_not_reused() -> None:
    deflater = Deflater(15, no_context_takeover=False)
    inflater = Inflater(15, no_context_takeover=False, max_size=1000)
    with pytest.raises(DeflateError):
        inflater.decompress(deflater.compress(noise(2000)))
    with pytest.raises(DeflateError, match="earlier"):
        inflater.decompress(deflater.compress(b"small"))
    corrupt = Inflater(15, no_context_takeover=False, max_size=1000)
    with pytest.raises(DeflateError, match="corrupt"):
        corrupt.decompress(b"\xff\xff\xff")
    with pytest.raises(DeflateError, match="earlier"):
        corrupt.decompress(Deflater(15, no_context_takeover=False).compress(b"small"))
    # Without context takeover each message starts afresh.
    fresh = Inflater(15, no_context_takeover=True, max_size=1000)
    with pytest.raises(DeflateError):
        fresh.decompress(b"\xff\xff\xff")
    assert fresh.decompress(Deflater(15, no_context_takeover=True).compress(b"small")) == b"small"


def second_of_two() -> bytes:
    """The second of two like messages under context takeover: it refers into the first."""
    deflater = Deflater(15, no_context_takeover=False)
    deflater.compress(noise(300))
    return deflater.compress(noise(300))


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"\xff\xff\xff\xff\xff\xff",
        b"\x07",  # reserved block type 3
        b"\x00\x05\x00\x00\x00",  # stored block whose lengths disagree
        b"\x04\xff\xff",  # dynamic block declaring too many symbols
        second_of_two(),  # refers back into a message this decoder never saw
        noise(5000),
    ],
)
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_corrupt_input_raises_deflate_error(payload: bytes, no_context_takeover: bool) -> None:
    with pytest.raises(DeflateError):
        Inflater(15, no_context_takeover, MAX_SIZE).decompress(payload)


def test_a_final_deflate_block() -> None:
    # A sender may end each message's stream with BFINAL (RFC 7692 7.2.3.4).
    encoder = zlib.compressobj(wbits=-15)
    final = encoder.compress(b"hello") + encoder.flush(zlib.Z_FINISH)
    assert Inflater(15, no_context_takeover=True, max_size=MAX_SIZE).decompress(final) == b"hello"
    with pytest.raises(DeflateError, match="after the final"):
        Inflater(15, no_context_takeover=True, max_size=MAX_SIZE).decompress(final + b"junk")
    # Under context takeover the window the next message may need is gone: refused.
    with pytest.raises(DeflateError, match="BFINAL"):
        Inflater(15, no_context_takeover=False, max_size=MAX_SIZE).decompress(final)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Inflater(15, no_context_takeover=False, max_size=-1),
        lambda: Inflater(16, no_context_takeover=False, max_size=1),
        lambda: Inflater(7, no_context_takeover=False, max_size=1),
        lambda: Deflater(16, no_context_takeover=False),
    ],
)
def test_invalid_settings_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(DeflateError):
        make()


# Fragmented messages ---------------------------------------------------------------------


def test_websockets_fragments_are_assembled_and_decoded() -> None:
    agreement = Agreement(False, False)
    server = websockets_server(agreement)
    assembler = MessageAssembler(ClientCodec.from_agreement(agreement, MAX_SIZE).inflater)
    for message in MESSAGES:
        pieces = [message[:10], message[10:1000], message[1000:]]
        frames = [
            server.encode(Frame(Opcode.CONT if index else Opcode.BINARY, piece, fin=index == 2))
            for index, piece in enumerate(pieces)
        ]
        assert [frame.rsv1 for frame in frames] == [True, False, False]
        results = [
            assembler.feed(frame.data, frame.fin, frame.rsv1, frame.opcode is Opcode.CONT)
            for frame in frames
        ]
        assert results == [None, None, message]


def test_aiohttp_message_split_into_frames_is_assembled(loop: asyncio.AbstractEventLoop) -> None:
    server = AiohttpServer(loop, 15, notakeover=False)
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=MAX_SIZE))
    for message in MESSAGES:
        payload = server.send(message)
        cuts = sorted({0, len(payload) // 3, len(payload) // 2, len(payload)})
        pieces = [memoryview(payload)[start:end] for start, end in pairwise(cuts)]
        results = [
            assembler.feed(piece, index == len(pieces) - 1, index == 0, index > 0)
            for index, piece in enumerate(pieces)
        ]
        assert results == [None] * (len(pieces) - 1) + [message]


def test_uncompressed_messages_pass_through() -> None:
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=MAX_SIZE))
    assert assembler.feed(b"plain", True, False, False) == b"plain"
    assert assembler.feed(bytearray(b"pl"), False, False, False) is None
    assert assembler.feed(memoryview(b"ain"), True, False, True) == b"plain"


@pytest.mark.parametrize("rsv1", [False, True])
def test_fragments_are_copied_from_a_reused_buffer(rsv1: bool) -> None:
    # picows hands each frame's payload as a view of its read buffer, reused afterwards.
    message = b"fragmented, " * 20
    payload = Deflater(15, no_context_takeover=False).compress(message) if rsv1 else message
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=MAX_SIZE))
    buffer = bytearray(len(payload))
    half = len(payload) // 2
    buffer[:half] = payload[:half]
    assert assembler.feed(memoryview(buffer)[:half], False, rsv1, False) is None
    buffer[:] = bytes(len(payload))
    buffer[half:] = payload[half:]
    assert assembler.feed(memoryview(buffer)[half:], True, False, True) == message


def test_rsv1_on_a_continuation_frame_is_refused() -> None:
    payload = Deflater(15, no_context_takeover=False).compress(b"hello, world")
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=MAX_SIZE))
    assert assembler.feed(payload[:3], False, True, False) is None
    with pytest.raises(DeflateError, match="continuation"):
        assembler.feed(payload[3:], True, True, True)
    # websockets refuses the same frame.
    server = websockets_server(Agreement(False, False))
    server.decode(Frame(Opcode.BINARY, payload[:3], fin=False, rsv1=True))
    with pytest.raises(ProtocolError, match="RSV1"):
        server.decode(Frame(Opcode.CONT, payload[3:], rsv1=True))


def test_frames_out_of_order_are_refused() -> None:
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=MAX_SIZE))
    with pytest.raises(DeflateError, match="without a message"):
        assembler.feed(b"x", True, False, True)
    assert assembler.feed(b"x", False, False, False) is None
    with pytest.raises(DeflateError, match="new message"):
        assembler.feed(b"y", True, False, False)
    assert assembler.feed(b"z", True, False, False) == b"z"  # and it recovers


@pytest.mark.parametrize("rsv1", [False, True])
def test_fragments_above_the_limit_are_refused(rsv1: bool) -> None:
    assembler = MessageAssembler(Inflater(15, no_context_takeover=False, max_size=1000))
    assert assembler.feed(bytes(600), False, rsv1, False) is None
    with pytest.raises(DeflateError, match="max_size"):
        assembler.feed(bytes(600), True, False, True)
    with pytest.raises(DeflateError, match="max_size"):
        assembler.feed(bytes(1001), True, False, False)


# Properties ------------------------------------------------------------------------------


@EXAMPLES
@given(agreement=agreements(), batch=st.lists(messages(), min_size=1, max_size=6))
def test_round_trip_with_websockets(agreement: Agreement, batch: list[bytes]) -> None:
    server = websockets_server(agreement)
    codec = ClientCodec.from_agreement(agreement, MAX_SIZE)
    for message in batch:
        assert websockets_decode(server, codec.deflater.compress(message)) == message
        assert codec.inflater.decompress(websockets_encode(server, message)) == message


@EXAMPLES
@given(
    bits=st.integers(9, 15),
    notakeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    batch=st.lists(messages(), min_size=1, max_size=6),
)
def test_round_trip_with_aiohttp(
    loop: asyncio.AbstractEventLoop,
    bits: int,
    notakeover: bool,
    client_no_context_takeover: bool,
    batch: list[bytes],
) -> None:
    # aiohttp's server compresses with `bits` and reads with 15 bits and the window kept.
    server = AiohttpServer(loop, bits, notakeover)
    agreement = Agreement(notakeover, client_no_context_takeover, server_max_window_bits=bits)
    codec = ClientCodec.from_agreement(agreement, MAX_SIZE)
    for message in batch:
        assert server.receive(client_frame(codec.deflater.compress(message), rsv1=True)) == message
        assert codec.inflater.decompress(server.send(message)) == message


@st.composite
def hostile_payloads(draw: st.DrawFn) -> bytes:
    """Random bytes; a stored block cut short, so that the appended 00 00 ff ff is read as its
    data; or a valid compressed message with a few bytes changed or cut."""
    kind = draw(st.sampled_from(["random", "short stored block", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    if kind == "short stored block":
        data = draw(st.binary(max_size=3000))
        size = draw(st.integers(len(data), len(data) + 8))
        return b"\x00" + size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little") + data
    payload = bytearray(Deflater(15, no_context_takeover=True).compress(draw(messages())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(payload) - 1))
        payload[at] = draw(st.integers(0, 255))
    return bytes(payload[: draw(st.integers(0, len(payload)))])


@EXAMPLES
@given(
    batch=st.lists(hostile_payloads(), min_size=1, max_size=4),
    bits=st.integers(8, 15),
    no_context_takeover=st.booleans(),
    max_size=st.integers(0, 5000),
)
def test_hostile_input_is_decoded_within_limits_or_refused(
    batch: list[bytes], bits: int, no_context_takeover: bool, max_size: int
) -> None:
    inflater = Inflater(bits, no_context_takeover, max_size)
    for payload in batch:
        try:
            message = inflater.decompress(payload)
        except DeflateError:
            continue
        assert isinstance(message, bytes)
        assert len(message) <= max_size


def outcome(inflater: Inflater, payload: bytes) -> bytes | None:
    """The message, or None if refused."""
    try:
        return inflater.decompress(payload)
    except DeflateError:
        return None


@EXAMPLES
@given(
    batch=st.lists(hostile_payloads(), min_size=1, max_size=4), no_context_takeover=st.booleans()
)
def test_joining_the_tail_or_not_decodes_the_same(
    batch: list[bytes], no_context_takeover: bool
) -> None:
    # The switch at 2 KiB is for speed only: forcing either side gives the same results.
    results = []
    for join_below_bytes in (0, 1 << 30):
        with mock.patch.object(deflate, "_JOIN_BELOW_BYTES", join_below_bytes):
            inflater = Inflater(15, no_context_takeover, max_size=5000)
            results.append([outcome(inflater, payload) for payload in batch])
    assert results[0] == results[1]


_PARAMETER_NAMES = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "foo",
]
_VALUES = ["", "=8", "=9", "=12", "=15", "=16", "=08", '="10"', '=""', "=x", "= 11"]


@st.composite
def response_headers(draw: st.DrawFn) -> str:
    """Responses built from the grammar's pieces, valid or nearly."""
    extensions = []
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(["permessage-deflate"] * 6 + ["x-webkit-deflate-frame"]))
        params = draw(
            st.lists(
                st.tuples(st.sampled_from(_PARAMETER_NAMES), st.sampled_from(_VALUES)), max_size=4
            )
        )
        separator = draw(st.sampled_from(["; ", ";", " ; "]))
        extensions.append(separator.join([name, *(param + value for param, value in params)]))
    return ", ".join(extensions)


@EXAMPLES
@given(header=response_headers())
def test_parse_response_agrees_with_websockets_client(header: str) -> None:
    theirs = websockets_client_negotiates(header)
    try:
        ours = parse_response(header)
    except DeflateError:
        assert theirs is None
        return
    assert theirs is not None and ours == agreement_of(theirs)


@EXAMPLES
@given(
    agreement=st.builds(
        Agreement, st.booleans(), st.booleans(), st.integers(8, 15), st.integers(9, 15)
    )
)
def test_describe_parses_back(agreement: Agreement) -> None:
    assert parse_response(agreement.describe()) == agreement
