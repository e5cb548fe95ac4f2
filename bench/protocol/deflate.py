"""RFC 7692 permessage-deflate for the generator's client side, as bytes in, bytes out (no I/O).

Written by hand because nothing can be borrowed for the hot path. The generator's frames come
from picows' transport (``WSTransport``/``WSListener``), which has no extension support: it
exposes a frame's ``rsv1`` bit and can send with ``rsv1=True``, and that is all. (picows'
websockets-compatible layer has a private deflate bound to its own connection class.)
websockets' and aiohttp's implementations work on their own frame and reader objects, so
wrapping them would build a foreign frame object per message on the generator's hot path.
Those two implementations are what tests/unit/test_deflate.py checks this one against.

Use: put ``OFFER`` in the request's Sec-WebSocket-Extensions, give the response's header to
``parse_response``, build a ``ClientCodec`` from the ``Agreement``, send
``codec.deflater.compress(payload)`` with rsv1 set, and pass received data frames through a
``MessageAssembler``. Every refusal raises ``DeflateError``; after one, fail the connection.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import NamedTuple

# What browsers send: permessage-deflate with defaults, and the client accepts a smaller
# window for its own compressor if the server asks for one.
OFFER = "permessage-deflate; client_max_window_bits"

_EXTENSION = "permessage-deflate"
# A Z_SYNC_FLUSH ends with an empty stored block, whose last four octets the sender strips and
# the receiver appends (RFC 7692 7.2.1, 7.2.2).
_TAIL = b"\x00\x00\xff\xff"
# Below this size, joining the tail onto the payload (one copy) is cheaper than a second
# decompress() call; websockets measured the same crossing (permessage_deflate.py).
_JOIN_BELOW_BYTES = 2044
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}  # decimal, no leading zeros
_PARAMETERS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_join = b"".join


class DeflateError(ValueError):
    """A refused negotiation, corrupt compressed data, or a message over the size limit."""


def _check_window_bits(name: str, bits: int, lowest: int = 8) -> None:
    if not lowest <= bits <= 15:
        raise DeflateError(f"{name} must be between {lowest} and 15, got {bits}")


@dataclass(frozen=True)
class Agreement:
    """The permessage-deflate parameters both sides use, as RFC 7692 section 7.1 names them."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def __post_init__(self) -> None:
        _check_window_bits("server_max_window_bits", self.server_max_window_bits)
        _check_window_bits("client_max_window_bits", self.client_max_window_bits)

    def describe(self) -> str:
        """The agreement in Sec-WebSocket-Extensions form; window bits of 15 are left out."""
        parts = [_EXTENSION]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits != 15:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


class _Settings(NamedTuple):
    """One permessage-deflate element's parameters; None where a parameter is absent."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | None
    client_max_window_bits_named: bool  # present, with or without a value


def _skip_ows(header: str, pos: int) -> int:
    end = len(header)
    while pos < end and header[pos] in " \t":
        pos += 1
    return pos


def _malformed(header: str, pos: int, expected: str) -> DeflateError:
    return DeflateError(
        f"malformed Sec-WebSocket-Extensions {header!r}: expected {expected} at offset {pos}"
    )


def _token(header: str, pos: int, what: str) -> tuple[str, int]:
    match = _TOKEN.match(header, pos)
    if match is None:
        raise _malformed(header, pos, what)
    return match.group(), match.end()


def _parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """RFC 6455 9.1's extension-list as (name, [(parameter, value or None)]), values unquoted.

    Empty list elements are skipped, as HTTP's list rule asks (RFC 9110 5.6.1).
    """
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    end = len(header)
    pos = 0
    while True:
        pos = _skip_ows(header, pos)
        while pos < end and header[pos] == ",":
            pos = _skip_ows(header, pos + 1)
        if pos == end:
            return extensions
        name, pos = _token(header, pos, "an extension name")
        params: list[tuple[str, str | None]] = []
        pos = _skip_ows(header, pos)
        while pos < end and header[pos] == ";":
            param, pos = _token(header, _skip_ows(header, pos + 1), "a parameter name")
            pos = _skip_ows(header, pos)
            value: str | None = None
            if pos < end and header[pos] == "=":
                pos = _skip_ows(header, pos + 1)
                quoted = _QUOTED.match(header, pos)
                if quoted is not None:
                    # RFC 6455 9.1 wants the unescaped value to be a token; the only values
                    # accepted later (8..15) are.
                    value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
                    pos = quoted.end()
                else:
                    value, pos = _token(header, pos, "a parameter value")
                pos = _skip_ows(header, pos)
            params.append((param, value))
        if pos < end and header[pos] != ",":
            raise _malformed(header, pos, "';' or ','")
        extensions.append((name, params))


def _settings(header: str, where: str, *, bare_client_bits: bool) -> _Settings:
    """The single permessage-deflate element of ``header``, each parameter checked.

    ``bare_client_bits`` allows client_max_window_bits without a value (offers only).
    """
    extensions = _parse_extensions(header)
    names = [name for name, _ in extensions]
    for name in names:
        if name != _EXTENSION:
            raise DeflateError(f"{where} {header!r}: unsupported extension {name!r}")
    if len(names) != 1:
        raise DeflateError(f"{where} {header!r}: expected one permessage-deflate, got {len(names)}")
    seen: dict[str, str | None] = {}
    for name, value in extensions[0][1]:
        if name not in _PARAMETERS:
            raise DeflateError(f"{where} {header!r}: unknown parameter {name!r}")
        if name in seen:
            raise DeflateError(f"{where} {header!r}: {name} given twice")
        if name.endswith("_no_context_takeover"):
            if value is not None:
                raise DeflateError(f"{where} {header!r}: {name} takes no value")
        elif value is None:
            if not (bare_client_bits and name == "client_max_window_bits"):
                raise DeflateError(f"{where} {header!r}: {name} needs a value")
        elif value not in _WINDOW_BITS:
            raise DeflateError(f"{where} {header!r}: {name}={value} is not a decimal 8..15")
        seen[name] = value
    server_bits = seen.get("server_max_window_bits")
    client_bits = seen.get("client_max_window_bits")
    return _Settings(
        "server_no_context_takeover" in seen,
        "client_no_context_takeover" in seen,
        None if server_bits is None else _WINDOW_BITS[server_bits],
        None if client_bits is None else _WINDOW_BITS[client_bits],
        "client_max_window_bits" in seen,
    )


def parse_response(header: str | None, offered: str = OFFER) -> Agreement | None:
    """The agreement in the server's Sec-WebSocket-Extensions, or None if it declined.

    ``offered`` is what the request carried: one permessage-deflate element. Applies RFC 7692's
    client rules (sections 5, 7.1): one extension, each parameter once with a valid value,
    nothing the offer did not allow. Raises DeflateError, after which the client must fail
    the connection.
    """
    if header is None or not header.strip(" \t"):
        return None
    offer = _settings(offered, "offer", bare_client_bits=True)
    answer = _settings(header, "response", bare_client_bits=False)
    if offer.server_no_context_takeover and not answer.server_no_context_takeover:
        raise DeflateError(f"response {header!r}: server_no_context_takeover was offered")
    server_bits = answer.server_max_window_bits
    if offer.server_max_window_bits is not None and (
        server_bits is None or server_bits > offer.server_max_window_bits
    ):
        raise DeflateError(
            f"response {header!r}: server_max_window_bits must be at most the offered "
            f"{offer.server_max_window_bits}"
        )
    client_bits = answer.client_max_window_bits
    if client_bits is not None:
        if not offer.client_max_window_bits_named:
            raise DeflateError(f"response {header!r}: client_max_window_bits was not offered")
        if offer.client_max_window_bits is not None and client_bits > offer.client_max_window_bits:
            raise DeflateError(
                f"response {header!r}: client_max_window_bits must be at most the offered "
                f"{offer.client_max_window_bits}"
            )
    else:
        client_bits = offer.client_max_window_bits
    if client_bits == 8:
        # As websockets' client does ("unsupported client_max_window_bits = 8, use 9"): zlib
        # refuses raw deflate with 8 bits (madler/zlib#171, it would silently use 9), so no
        # compressor can promise a 256-byte window. (zlib at 9 bits in fact keeps distances
        # within 250 bytes, deflate.c's MAX_DIST, but its API does not promise it.)
        raise DeflateError(f"response {header!r}: client_max_window_bits=8 is unsupported")
    return Agreement(
        server_no_context_takeover=answer.server_no_context_takeover,
        client_no_context_takeover=(
            answer.client_no_context_takeover or offer.client_no_context_takeover
        ),
        server_max_window_bits=15 if server_bits is None else server_bits,
        client_max_window_bits=15 if client_bits is None else client_bits,
    )


class Deflater:
    """Compresses whole messages, each to be sent with rsv1 set on its first frame.

    ``max_window_bits`` is 9..15: raw deflate with 8 bits is refused by zlib (see
    parse_response), as in websockets.
    """

    __slots__ = ("_compress", "_flush", "_flush_mode", "max_window_bits", "no_context_takeover")

    def __init__(self, max_window_bits: int, no_context_takeover: bool) -> None:
        _check_window_bits("the compressor's max_window_bits", max_window_bits, lowest=9)
        self.max_window_bits = max_window_bits
        self.no_context_takeover = no_context_takeover
        encoder = zlib.compressobj(wbits=-max_window_bits)
        self._compress = encoder.compress
        self._flush = encoder.flush
        # A full flush empties the history as well, so each message decodes on its own
        # (no_context_takeover) without building a fresh compressor (about 256 KiB of zlib
        # state) per message; aiohttp does the same.
        self._flush_mode = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """The message's payload as sent: deflated, flushed, the trailing 00 00 ff ff removed.

        An empty message becomes the single octet 00 (RFC 7692 7.2.3.6).
        """
        head = self._compress(data)
        # The flush always ends in the four octets of an empty stored block (RFC 7692
        # 7.2.1), all of them in what flush() returns: the block's LEN and NLEN are
        # written whole after the compressor's pending bits.
        tail = self._flush(self._flush_mode)
        if head:
            return head + tail[:-4]
        return tail[:-4]


class Inflater:
    """Decompresses whole messages received with rsv1 set, refusing output above ``max_size``.

    With context takeover, a refusal leaves the shared window unusable, so every later call
    raises too. A payload cut short decodes to a prefix without complaint (zlib cannot tell
    a truncated stream from a flushed one; websockets and aiohttp behave the same).
    """

    __slots__ = (
        "_decoder",
        "_limit",
        "_wbits",
        "max_size",
        "max_window_bits",
        "no_context_takeover",
    )

    def __init__(self, max_window_bits: int, no_context_takeover: bool, max_size: int) -> None:
        # 8 is fine here: zlib inflates raw deflate with a 256-byte window.
        _check_window_bits("the decompressor's max_window_bits", max_window_bits)
        if max_size < 0:
            raise DeflateError(f"max_size must be at least 0, got {max_size}")
        self.max_window_bits = max_window_bits
        self.no_context_takeover = no_context_takeover
        self.max_size = max_size
        self._wbits = -max_window_bits
        # One octet more than allowed: if zlib fills it, the message is too big, whatever
        # it still holds back; if not, zlib stopped for want of input and holds nothing.
        self._limit = max_size + 1
        self._decoder: zlib._Decompress | None = (
            None if no_context_takeover else zlib.decompressobj(wbits=self._wbits)
        )

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        """The message, from its payload (all its frames' payloads joined)."""
        if not data:
            # Not a deflate stream at all; taken as the empty message instead of feeding the
            # bare 00 00 ff ff, which would leave the decoder inside a stored block.
            return b""
        if self.no_context_takeover:
            decoder = zlib.decompressobj(wbits=self._wbits)
        else:
            if self._decoder is None:
                raise DeflateError("the decompressor is unusable after an earlier refusal")
            decoder = self._decoder
        limit = self._limit
        try:
            if len(data) < _JOIN_BELOW_BYTES:
                out = decoder.decompress(_join((data, _TAIL)), limit)
            else:
                out = decoder.decompress(data, limit)
                if len(out) < limit:
                    rest = decoder.decompress(_TAIL, limit - len(out))
                    if rest:
                        out += rest
        except zlib.error as exc:
            self._decoder = None
            raise DeflateError(f"corrupt compressed message: {exc}") from exc
        if len(out) >= limit:
            self._decoder = None
            raise DeflateError(f"decompressed message exceeds max_size={self.max_size} bytes")
        if decoder.eof:
            # The sender ended the deflate stream (a block with BFINAL set, RFC 7692 7.2.3.4).
            if not self.no_context_takeover:
                # The next message may refer to this window, which zlib has just discarded.
                self._decoder = None
                raise DeflateError("the deflate stream ended (BFINAL) under context takeover")
            if decoder.unused_data not in (b"", _TAIL):
                raise DeflateError("data after the final deflate block")
        return out


class ClientCodec:
    """The client's two halves of an agreement: what it sends and what it receives."""

    __slots__ = ("deflater", "inflater")

    def __init__(self, deflater: Deflater, inflater: Inflater) -> None:
        self.deflater = deflater
        self.inflater = inflater

    @classmethod
    def from_agreement(cls, agreement: Agreement, max_size: int) -> ClientCodec:
        """``max_size``: the largest message accepted, in bytes once decompressed."""
        return cls(
            Deflater(agreement.client_max_window_bits, agreement.client_no_context_takeover),
            Inflater(
                agreement.server_max_window_bits, agreement.server_no_context_takeover, max_size
            ),
        )


class MessageAssembler:
    """Joins a data message's frames and decompresses it once, when its last frame arrives.

    RFC 7692 section 6 marks a compressed message by rsv1 on its first frame only; a continuation
    frame with rsv1 set is refused. Feed data frames only (control frames are never
    compressed and may arrive between fragments). A message without rsv1 passes through
    uncompressed. Fragments kept between calls are copied: a transport may reuse its buffer.
    """

    __slots__ = ("_compressed", "_decompress", "_max_compressed", "_max_size", "_parts", "_size")

    def __init__(self, inflater: Inflater) -> None:
        self._decompress = inflater.decompress
        self._max_size = inflater.max_size
        # Compressed fragments are held before inflating, so they are bounded too: a sane
        # compressor never exceeds 9 bits per octet (fixed Huffman literals) plus framing.
        self._max_compressed = inflater.max_size + inflater.max_size // 8 + 64
        self._parts: list[bytes | bytearray | memoryview] | None = None
        self._compressed = False
        self._size = 0

    def feed(
        self, payload: bytes | bytearray | memoryview, fin: bool, rsv1: bool, is_continuation: bool
    ) -> bytes | None:
        """The whole message once ``fin`` arrives, else None."""
        if not is_continuation:
            if self._parts is not None:
                self._parts = None
                raise DeflateError("a new message began before the last one's final frame")
            if fin:
                if rsv1:
                    return self._decompress(payload)
                if len(payload) > self._max_size:
                    raise DeflateError(f"message exceeds max_size={self._max_size} bytes")
                return bytes(payload)
            self._parts = [bytes(payload)]
            self._compressed = rsv1
            self._size = len(payload)
            return None
        parts = self._parts
        if parts is None:
            raise DeflateError("a continuation frame without a message in progress")
        if rsv1:
            self._parts = None
            raise DeflateError("rsv1 set on a continuation frame (RFC 7692 section 6)")
        self._size += len(payload)
        if self._size > (self._max_compressed if self._compressed else self._max_size):
            self._parts = None
            raise DeflateError(f"message exceeds max_size={self._max_size} bytes")
        if not fin:
            parts.append(bytes(payload))
            return None
        self._parts = None
        parts.append(payload)  # joined at once, before the transport reuses its buffer
        message = _join(parts)
        return self._decompress(message) if self._compressed else message
