"""What every server under test shares: the fairness contract, the command line and the life cycle.

Each server module only says how its library starts listening with the contract's settings (or,
in the shipped tier, with its library's defaults); this module parses ``--host/--port/--loop``
(the tier, TLS, and the scale-out options: several processes on one port, a Redis broker between
them), prints ``READY <port>`` once listening and stops cleanly on SIGTERM or SIGINT. Keeping that
here is what lets the servers read alike side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import platform
import resource
import signal
import socket
import ssl
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

# --- The fairness contract -------------------------------------------------------------------
# Every server and the generator obey these; tests check them against the running servers, and
# the harness writes them into meta.json. Library defaults differ on each line (see
# shared/FIELD-NOTES.md), which is why none of them is left to a default.


@dataclass(frozen=True)
class FairnessContract:
    # permessage-deflate: websockets, aiohttp and uvicorn enable it by default; off everywhere.
    compression: str = "off"
    # Largest message a server accepts, the same everywhere (websockets' and engineio's default
    # are 1 MiB and 1,000,000 bytes; aiohttp's 4 MiB; uvicorn's 16 MiB).
    max_message_bytes: int = 1 << 20
    # Raw WebSocket keepalive pings: off on the servers (the generator answers pings anyway).
    websocket_ping_interval_s: float | None = None
    # Engine.IO's heartbeat is part of the protocol and cannot be turned off: it is pushed out
    # beyond any run, so no heartbeat traffic falls inside a measurement.
    engineio_ping_interval_s: float = 3600.0
    engineio_ping_timeout_s: float = 60.0
    # Message scenarios use the WebSocket transport only; polling is a scenario of its own
    # (Socket.IO servers take ``--transports``; the harness records it in each row).
    socketio_transports: tuple[str, ...] = ("websocket",)
    # python-socketio's default: each event is handled in a task of its own. Kept, and recorded.
    socketio_async_handlers: bool = True
    # Socket.IO event that the servers echo, and the namespace.
    socketio_event: str = "echo"
    socketio_namespace: str = "/"
    # Fan-out (broadcast). Raw servers: a connection to fanout_path receives every message
    # published on a connection to publish_path. Socket.IO: a client joins fanout_room with
    # the join event (acknowledged once it is in), publishes with the publish event, and
    # receivers get the fanout event. Each library's own broadcast path is used (websockets'
    # broadcast(), python-socketio's emit to a room; aiohttp has none: it loops).
    fanout_path: str = "/fanout"
    publish_path: str = "/publish"
    fanout_room: str = "fanout"
    socketio_join_event: str = "join"
    socketio_publish_event: str = "publish"
    socketio_fanout_event: str = "fanout"
    # Scale-out (--worker-id): the event a Socket.IO publisher asks which process it is on
    # (acknowledged with the worker id); raw servers announce it on both fan-out paths.
    socketio_worker_event: str = "worker"
    # glibc's malloc. asyncio (not uvloop) reads every socket into a fresh 256 KiB buffer. glibc
    # serves blocks above its mmap threshold (128 KiB at start) with mmap, and raises the
    # threshold for good the first time the process frees such a block whole; until then each
    # message read costs an mmap, an mremap, a munmap and two page faults. Whether and when a
    # fresh process gets there depends on what happens to it: under the same load about one
    # aiohttp server process in ten did and handled 1.5-2x the messages per CPU-second of the
    # others; a traced websockets process did within its first second. Every server therefore
    # sets both thresholds at start, where a long-running process ends up: mmap above the
    # largest message, trim at twice that (glibc's own rule), so no result rests on that chance.
    malloc_mmap_threshold_bytes: int = 2 << 20
    malloc_trim_threshold_bytes: int = 4 << 20

    # Listen backlog: asyncio's create_server (websockets) defaults to 100, aiohttp's TCPSite to
    # 128, Node's listen to 511. A connect storm that outruns a short queue loses SYNs, and each
    # lost one costs its client a 1-s retransmission (50,000 connections onto 3 websockets
    # processes: 5,781 overflows, about 150 set-ups a second instead of 1,000). The same
    # everywhere; Linux caps it at net.core.somaxconn (4096 here).
    listen_backlog: int = 4096

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FAIRNESS = FairnessContract()

LOOPS = ("asyncio", "uvloop")


# --- Tiers -----------------------------------------------------------------------------------
# equalised: the fairness contract above, on every server (the default). shipped: each library's
# defaults as the installed version ships them (compression, keepalive pings, Socket.IO
# transports, message size limits, async handlers), by not passing those settings at all; what
# they are is recorded in servers/shipped.py. A server still passes, in both tiers, what the
# harness needs of it: the address and port, the scale-out options, the listen backlog, TLS, its
# handlers, and what its clean stop takes.
Tier = Literal["equalised", "shipped"]
TIERS: tuple[Tier, ...] = ("equalised", "shipped")
_tier: Tier = "equalised"


def set_tier(tier: Tier) -> None:
    global _tier
    _tier = tier


def tier() -> Tier:
    """The tier of this process (``--tier``), as the server modules read it at start."""
    return _tier


# --- TLS -------------------------------------------------------------------------------------
# With --tls-cert and --tls-key every server serves wss:// (and https:// for Engine.IO's
# long-polling) with one kind of context: ssl.SSLContext(PROTOCOL_TLS_SERVER) and the chain
# loaded, nothing else set, so that Python's defaults (TLS 1.2 and 1.3) decide the rest.
_tls_context: ssl.SSLContext | None = None


class TlsFilesUnusable(Exception):
    """The certificate chain or key cannot be read, or are not a chain and its key."""


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server's context for ``cert`` (PEM chain, leaf first) and ``key``. Raises
    TlsFilesUnusable with a one-line reason."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise TlsFilesUnusable(f"{flag}: cannot read {path}: {exc.strerror}") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsFilesUnusable(
            f"--tls-cert/--tls-key: {cert} and {key} are not a PEM certificate chain and its "
            f"key ({exc.reason or exc})"
        ) from exc
    return context


def set_tls_context(context: ssl.SSLContext | None) -> None:
    global _tls_context
    _tls_context = context


def tls_context() -> ssl.SSLContext | None:
    """The TLS context to serve with (``--tls-cert``/``--tls-key``), or None: plain TCP."""
    return _tls_context


# --- Life cycle ------------------------------------------------------------------------------


class RunningServer(Protocol):
    """What a server module's ``start`` returns."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None: ...


StartServer = Callable[[str, int], Awaitable[RunningServer]]
# Socket.IO servers also take the Engine.IO transports to allow (None: the library's default,
# which only the shipped tier leaves to it).
StartSocketioServer = Callable[[str, int, tuple[str, ...] | None], Awaitable[RunningServer]]
ENGINEIO_TRANSPORTS = ("websocket", "polling")


# --- Scale-out (issue 18): several processes on one port, a broker between them ---------------
# The harness starts the first process with ``--port 0 --reuse-port``, reads its READY line,
# then starts the others on that port. ``--worker-id`` tells a receiver which process it reached;
# ``--broker-url`` carries every broadcast through Redis pub/sub so that each process's
# receivers get what was published on any of them.
MAX_WORKER_ID = 1023
# Redis pub/sub channels: the raw servers' (servers/broker.py) and python-socketio's
# AsyncRedisManager's, apart so that both kinds of server can share one Redis.
BROKER_CHANNEL = "wsbench:fanout"
SOCKETIO_BROKER_CHANNEL = "wsbench:socketio"
_WORKER_ANNOUNCEMENT_PREFIX = b"worker "


def worker_announcement(worker_id: int) -> bytes:
    """The TEXT frame a raw server sends first on every fan-out connection under --worker-id."""
    return _WORKER_ANNOUNCEMENT_PREFIX + str(worker_id).encode()


def parse_worker_announcement(payload: bytes) -> int | None:
    """The worker id that ``payload`` announces, or None if it is no announcement."""
    digits = payload.removeprefix(_WORKER_ANNOUNCEMENT_PREFIX)
    if digits is payload or not digits.isdigit() or worker_announcement(int(digits)) != payload:
        return None
    worker_id = int(digits)
    return worker_id if worker_id <= MAX_WORKER_ID else None


@dataclass(frozen=True)
class ScaleOut:
    """The scale-out options of this process, as the server modules read them at start."""

    reuse_port: bool = False
    worker_id: int | None = None
    broker_url: str | None = None


_scale_out = ScaleOut()


def set_scale_out(settings: ScaleOut) -> None:
    global _scale_out
    _scale_out = settings


def scale_out() -> ScaleOut:
    return _scale_out


class BrokerUnreachable(Exception):
    """The broker could not be reached, or not subscribed to, at start."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the broker at {url}: {reason}")


def broker_url_error(url: str) -> str | None:
    """Why ``url`` is not of the form redis://HOST[:PORT][/DB], or None if it is."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number in range)
    except ValueError:
        return "not a URL"
    if parts.scheme != "redis":
        return "the scheme must be redis://"
    if not parts.hostname:
        return "no host"
    database = parts.path.removeprefix("/")
    if (database and not database.isdigit()) or parts.query or parts.fragment:
        return "the path is a database number (redis://HOST:PORT/DB), nothing else"
    return None


# --- Handicap -------------------------------------------------------------------------------
# A known, adjustable slowdown, so that a regression gate can be shown to catch one: every
# server calls burn_handicap() once per echoed message. Zero (the default) costs one comparison.
# Two kinds: a time (--handicap-us, for gates judging time) and a count of interpreter loop
# iterations (--handicap-loops, the same work in every run, for gates judging instruction
# counts, which a time-based spin would not give under callgrind).
MAX_HANDICAP_US = 100_000.0
MAX_HANDICAP_LOOPS = 1_000_000
_handicap_ns = 0
_handicap_loops = 0


def set_handicap(microseconds: float, loops: int = 0) -> None:
    global _handicap_ns, _handicap_loops
    _handicap_ns = int(microseconds * 1000)
    _handicap_loops = loops


def burn_handicap() -> None:
    """Spin (hold the CPU, like real work would) for the configured handicap."""
    if _handicap_ns:
        deadline = time.perf_counter_ns() + _handicap_ns
        while time.perf_counter_ns() < deadline:
            pass
    if _handicap_loops:  # (a loop over range(0) would cost about 950 instructions a message)
        for _ in range(_handicap_loops):
            pass


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="event loop")
    parser.add_argument(
        "--tier",
        choices=TIERS,
        default="equalised",
        help="whose settings: the fairness contract's (equalised) or the library's defaults as "
        "installed (shipped: its compression, pings, transports and limits) (default: equalised)",
    )
    parser.add_argument(
        "--transports",
        help="Socket.IO servers: Engine.IO transports to allow, comma list of websocket, "
        "polling (default: websocket; in the shipped tier the library's, polling,websocket)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="serve wss:// (and https://) with this PEM certificate chain, leaf first; with "
        "--tls-key (default: none, plain ws://)",
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert"
    )
    parser.add_argument(
        "--handicap-us",
        type=float,
        default=0.0,
        help="burn this many microseconds of CPU per echoed message (off by default; for "
        "testing regression gates, never for measuring)",
    )
    parser.add_argument(
        "--handicap-loops",
        type=int,
        default=0,
        help="run this many empty loop iterations per echoed message (off by default; for "
        "testing instruction-count gates, never for measuring)",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so that several server processes listen on one port and "
        "the kernel spreads connections over them: start the first with --port 0, the others "
        "with the port its READY line gave (off by default)",
    )
    parser.add_argument(
        "--worker-id",
        type=int,
        metavar="K",
        help=f"this process's number, 0 to {MAX_WORKER_ID}: raw servers send every fan-out "
        "receiver the text frame 'worker K' before any broadcast; Socket.IO servers acknowledge "
        "the join event with K instead of true (default: none, no announcement)",
    )
    parser.add_argument(
        "--broker-url",
        metavar="redis://HOST:PORT/DB",
        help="fan out through Redis pub/sub at this URL, so that receivers on every process get "
        "every message published on any (default: none, broadcast within this process)",
    )
    args = parser.parse_args(argv)
    if args.worker_id is not None and not 0 <= args.worker_id <= MAX_WORKER_ID:
        parser.error(f"--worker-id: an integer from 0 to {MAX_WORKER_ID}")
    if args.broker_url is not None and (problem := broker_url_error(args.broker_url)):
        parser.error(f"--broker-url: redis://HOST:PORT/DB expected ({problem}): {args.broker_url}")
    if not 0 <= args.handicap_loops <= MAX_HANDICAP_LOOPS:
        parser.error(f"--handicap-loops: a whole number from 0 to {MAX_HANDICAP_LOOPS:,}")
    if not 0 <= args.handicap_us <= MAX_HANDICAP_US:
        parser.error(f"--handicap-us: a number of microseconds from 0 to {MAX_HANDICAP_US:g}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: give both or neither")
    if args.transports is None:
        # The shipped tier leaves the transports to the library (None) unless they are named.
        args.transports = FAIRNESS.socketio_transports if args.tier == "equalised" else None
    else:
        transports = tuple(t for t in args.transports.split(",") if t)
        if not transports or any(t not in ENGINEIO_TRANSPORTS for t in transports):
            parser.error(f"--transports: comma list of {', '.join(ENGINEIO_TRANSPORTS)}")
        args.transports = transports
    return args


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def settle_malloc(
    mmap_threshold_bytes: int = FAIRNESS.malloc_mmap_threshold_bytes,
    trim_threshold_bytes: int = FAIRNESS.malloc_trim_threshold_bytes,
) -> bool:
    """Fix glibc's malloc thresholds (see the contract); ``False`` where the C library is not
    glibc (nothing to settle: other allocators have no such switch) or refuses the values."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)
        and mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes)
    )


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound, listening TCP socket for a server that binds its own (to learn the port it
    got). Made with protocol IPPROTO_TCP, as getaddrinfo gives it to ``create_server``:
    asyncio's event loop sets TCP_NODELAY only on connections whose socket says so, and
    ``socket.create_server`` says 0; without it, a reply sent in two writes waits for the
    client's delayed ACK (40 ms a message, measured). uvloop sets TCP_NODELAY regardless.
    ``reuse_port`` adds SO_REUSEPORT (``--reuse-port``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(FAIRNESS.listen_backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def new_event_loop(loop_name: str) -> asyncio.AbstractEventLoop:
    if loop_name == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


# --- Event-loop health ----------------------------------------------------------------------
# Every server samples how late a 10 ms timer fires (the loop's lag: time its callbacks hold
# it); the harness asks for the samples by naming a file in WSBENCH_LOOP_LAG_FILE and keeps
# those inside the measured window. The sampler costs 100 wake-ups a second, the same on all
# (and runs only when a file is named).
LOOP_LAG_FILE_ENV = "WSBENCH_LOOP_LAG_FILE"
LOOP_LAG_INTERVAL_S = 0.010


async def _sample_loop_lag(samples: array[int]) -> None:
    interval_ns = int(LOOP_LAG_INTERVAL_S * 1e9)
    while True:
        due_ns = time.monotonic_ns() + interval_ns
        await asyncio.sleep(LOOP_LAG_INTERVAL_S)
        now_ns = time.monotonic_ns()
        samples.append(now_ns)
        samples.append(now_ns - due_ns)


def _write_loop_lag(samples: array[int]) -> None:
    """Pairs of (monotonic ns, lag ns) as text, one pair a line."""
    path = os.environ.get(LOOP_LAG_FILE_ENV)
    if not path:
        return
    lines = (f"{samples[i]} {samples[i + 1]}\n" for i in range(0, len(samples) - 1, 2))
    with open(path, "w") as stream:
        stream.writelines(lines)


async def _serve_until_signalled(start: StartServer, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await start(host, port)
    lag_samples: array[int] = array("q")
    # Only when asked for: its wake-ups are work that grows with time, not with messages,
    # which instruction counts (bench.modes.instructions) must not include.
    sampler = (
        asyncio.ensure_future(_sample_loop_lag(lag_samples))
        if os.environ.get(LOOP_LAG_FILE_ENV)
        else None
    )
    # The harness reads this line to learn the port; nothing else goes to stdout.
    print(f"READY {server.port}", flush=True)
    await stop.wait()
    if sampler is not None:
        sampler.cancel()
    # Written before closing: closing 15,000 Socket.IO connections outlasted the harness's
    # 5-s grace (it killed the server, and the samples were lost with it).
    _write_loop_lag(lag_samples)
    await server.close()


def run_server(
    start: StartServer | StartSocketioServer,
    description: str,
    argv: Sequence[str] | None = None,
    socketio: bool = False,
    scales_out: bool = False,
    tiers: bool = False,
) -> int:
    """Entry point shared by every server module: parse argv, serve until SIGTERM/SIGINT.
    ``socketio`` servers' ``start`` also gets the ``--transports`` to allow; raw WebSocket
    servers have no other transport and refuse anything else. Servers that read ``scale_out()``
    at start say ``scales_out``, and those that read ``tier()`` and ``tls_context()`` say
    ``tiers``; the others refuse those options."""
    args = parse_args(description, argv)
    settings = ScaleOut(args.reuse_port, args.worker_id, args.broker_url)
    if not scales_out and settings != ScaleOut():
        print("error: this server takes none of the scale-out options", file=sys.stderr)
        return 2
    if not tiers and (args.tier != "equalised" or args.tls_cert is not None):
        print("error: this server has no tier but the contract's, and no TLS", file=sys.stderr)
        return 2
    try:
        context = None if args.tls_cert is None else server_tls_context(args.tls_cert, args.tls_key)
    except TlsFilesUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    set_scale_out(settings)
    set_tier(args.tier)
    set_tls_context(context)
    set_handicap(args.handicap_us, args.handicap_loops)
    settle_malloc()
    if socketio:
        start_socketio = cast(StartSocketioServer, start)

        def start(host: str, port: int) -> Awaitable[RunningServer]:
            return start_socketio(host, port, args.transports)

    elif args.transports not in (None, ("websocket",)):
        print("error: --transports: a raw WebSocket server has only 'websocket'", file=sys.stderr)
        return 2
    # Connections are files: allow as many as the hard limit permits (the harness checks
    # requested connections against that limit before it starts).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(args.loop)) as runner:
            runner.run(_serve_until_signalled(cast(StartServer, start), args.host, args.port))
    except BrokerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # port in use, address not available
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
