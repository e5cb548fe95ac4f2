"""Issue 17, item 2: the Node.js reference servers (servers/node/) as real processes: life cycle,
the fairness contract, replies frame for frame equal to the Python servers', and the project's
generator driving them through ``--target`` unchanged."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from picows import WSCloseCode, WSMsgType

from bench.metrics.looplag import read_samples
from servers.common import FAIRNESS, LOOP_LAG_FILE_ENV
from tests.conftest import (
    READY_TIMEOUT_S,
    REPO_ROOT,
    TIME_FACTOR,
    ServerProcess,
    read_ready_port,
    stop_process,
)
from tests.integration.test_server_safety import websocket_handshake
from tests.integration.test_servers import (
    BINARY_PAYLOAD,
    NETWORK_TIMEOUT_S,
    POLLING_PATH,
    SOCKETIO_PATH,
    Frame,
    FrameRecorder,
    connect,
    offered_deflate_reply,
    oversized_text_frame_header,
    socketio_session,
    wait_closed_by_server,
)
from tests.node import (
    NODE_DIR,
    NODE_SERVERS,
    NodeServer,
    node_server_argv,
    require_node,
    running_node_server,
)

pytestmark = pytest.mark.integration

STOP_TIMEOUT_S = 5.0 * TIME_FACTOR
# How long "nothing else arrives" is watched for.
QUIET_S = 0.2 * TIME_FACTOR
# A generator run: calibration, warm-up, measurement, report.
BENCH_TIMEOUT_S = 120.0 * TIME_FACTOR
PATHS = {"node-socketio": SOCKETIO_PATH, "node-ws": "/"}
# The Python servers each Node server is compared with, frame for frame.
PYTHON_SOCKETIO = ("socketio_aiohttp", "socketio_asgi")
PYTHON_RAW = ("websockets", "aiohttp")
PLACEHOLDER = b'{"_placeholder":true,"num":0}'


@pytest.fixture(autouse=True)
def _node_installed() -> None:
    require_node()


@pytest.fixture
def node_server() -> Iterator[Callable[..., NodeServer]]:
    """``node_server(name, *extra_args)`` starts a Node server; it is stopped when the test ends."""
    with ExitStack() as stack:
        yield lambda name, *extra: stack.enter_context(running_node_server(name, *extra))


async def nothing_arrives(listener: FrameRecorder) -> bool:
    try:
        await asyncio.wait_for(listener.frames.get(), QUIET_S)
    except TimeoutError:
        return True
    return False


# --- Life cycle --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", NODE_SERVERS)
def test_prints_ready_and_stops_cleanly_on_signal(
    node_server: Callable[..., NodeServer], name: str, signum: int
) -> None:
    server = node_server(name)
    assert 0 < server.port < 65536
    server.process.send_signal(signum)
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0
    assert server.process.stdout is not None
    assert server.process.stdout.read() == b""  # READY (already read) and nothing else


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_stop_closes_open_connections_with_1001(
    node_server: Callable[..., NodeServer], name: str
) -> None:
    server = node_server(name)

    async def scenario() -> WSCloseCode | None:
        async with connect(server.port, PATHS[name]) as (transport, listener):
            if name == "node-socketio":
                await listener.next_frame()  # Engine.IO open
                transport.send(WSMsgType.TEXT, b"40")
                await listener.next_frame()  # Socket.IO connect
            server.process.send_signal(signal.SIGTERM)
            await wait_closed_by_server(transport)
            return listener.close_code

    # python-socketio sends Engine.IO's close packet instead; either way a Socket.IO client
    # sees its transport close, and neither the generator nor socket.io-client needs more.
    assert asyncio.run(scenario()) is WSCloseCode.GOING_AWAY
    started = time.monotonic()
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0
    # Promptly: the client answered the close, so the 2 s bound on waiting for it was not used.
    assert time.monotonic() - started < 1.5 * TIME_FACTOR


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_node_server_listens_on_loopback_only_by_default(name: str) -> None:
    argv = [arg for arg in node_server_argv(name) if arg not in ("--host", "127.0.0.1")]
    process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    try:
        port = read_ready_port(process, READY_TIMEOUT_S)
        listening = {
            c.laddr for c in psutil.Process(process.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        }  # fmt: skip
    finally:
        assert stop_process(process) == 0
    assert {(address.ip, address.port) for address in listening} == {("127.0.0.1", port)}


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_port_in_use_is_one_line_and_exit_2(name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = node_server_argv(name)
        argv[argv.index("--port") + 1] = str(port)
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=READY_TIMEOUT_S
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_node_ws_refuses_another_transport_with_one_line() -> None:
    result = subprocess.run(
        node_server_argv("node-ws", "--transports", "polling"),
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --transports: a raw WebSocket server has only 'websocket'"
    ]


@pytest.mark.parametrize(
    "argv",
    [("--loop", "uvloop"), ("--port", "http"), ("--transports", "carrier-pigeon"),
     ("--handicap-us", "-1"), ("--verbose", "1"), ("--host",)],
    ids=lambda argv: " ".join(argv),
)  # fmt: skip
def test_bad_arguments_are_exit_2_and_an_error_line(argv: tuple[str, ...]) -> None:
    """As argparse does for the Python servers: usage on stderr, then the error, exit 2."""
    result = subprocess.run(
        ["node", str(NODE_DIR / "socketio.js"), *argv],
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_writes_its_loop_lag_on_the_harness_clock(name: str, tmp_path: Path) -> None:
    """The harness names a file in WSBENCH_LOOP_LAG_FILE, as for the Python servers, and keeps
    the samples inside its (CLOCK_MONOTONIC) measured window."""
    lag_file = tmp_path / "loop-lag.txt"
    started_ns = time.monotonic_ns()
    process = subprocess.Popen(
        node_server_argv(name), cwd=REPO_ROOT, stdout=subprocess.PIPE,
        env={**os.environ, LOOP_LAG_FILE_ENV: str(lag_file)},
    )  # fmt: skip
    try:
        read_ready_port(process, READY_TIMEOUT_S)
        time.sleep(0.3)
    finally:
        assert stop_process(process) == 0
    stopped_ns = time.monotonic_ns()
    samples = read_samples(lag_file)
    assert len(samples) >= 10  # 30 expected at 10 ms; a busy machine fires fewer
    assert all(started_ns < t_ns < stopped_ns and lag_ns >= 0 for t_ns, lag_ns in samples)


def test_handicap_slows_each_echo() -> None:
    with running_node_server("node-ws", "--handicap-us", "20000") as server:

        async def scenario() -> float:
            async with connect(server.port, "/") as (transport, listener):
                started = time.monotonic()
                for _ in range(10):
                    transport.send(WSMsgType.TEXT, b"x")
                    await listener.next_frame()
                return time.monotonic() - started

        assert asyncio.run(scenario()) >= 10 * 0.020


# --- The fairness contract ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_no_compression_is_negotiated_when_a_client_offers_it(
    node_server: Callable[..., NodeServer], name: str
) -> None:
    server = node_server(name)
    assert asyncio.run(offered_deflate_reply(server.port, PATHS[name])) is None


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_message_over_the_size_limit_closes_with_1009(
    node_server: Callable[..., NodeServer], name: str
) -> None:
    server = node_server(name)

    async def scenario() -> WSCloseCode | None:
        async with connect(server.port, PATHS[name]) as (transport, listener):
            if name == "node-socketio":
                await listener.next_frame()  # Engine.IO open
            # The header alone (see test_servers): refused on the announced length.
            transport.underlying_transport.write(
                oversized_text_frame_header(FAIRNESS.max_message_bytes + 1)
            )
            await wait_closed_by_server(transport)
            return listener.close_code

    assert asyncio.run(scenario()) is WSCloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_message_of_exactly_the_size_limit_is_echoed(
    node_server: Callable[..., NodeServer], name: str
) -> None:
    server = node_server(name)
    if name == "node-socketio":
        envelope = b'42["echo",""]'
        message = b'42["echo","' + b"x" * (FAIRNESS.max_message_bytes - len(envelope)) + b'"]'
    else:
        message = b"x" * FAIRNESS.max_message_bytes
    assert len(message) == FAIRNESS.max_message_bytes

    async def scenario() -> Frame:
        if name == "node-ws":
            async with connect(server.port, "/") as (transport, listener):
                transport.send(WSMsgType.TEXT, message)
                return await listener.next_frame()
        async with socketio_session(server.port) as (transport, listener, _):
            transport.send(WSMsgType.TEXT, message)
            return await listener.next_frame()

    assert asyncio.run(scenario()) == (WSMsgType.TEXT, message)


def test_node_socketio_refuses_a_handshake_from_another_origin(
    node_server: Callable[..., NodeServer],
) -> None:
    """As the Python Socket.IO servers (python-engineio's same-origin default)."""
    port = node_server("node-socketio").port

    async def scenario() -> dict[str, tuple[int, str]]:
        return {
            origin: await websocket_handshake(port, origin or None)
            for origin in ("http://evil.example", "https://127.0.0.1.evil.example",
                           "", f"http://127.0.0.1:{port}")
        }  # fmt: skip

    replies = asyncio.run(scenario())
    assert replies["http://evil.example"][0] == 400
    assert replies["https://127.0.0.1.evil.example"][0] == 400
    for origin in ("", f"http://127.0.0.1:{port}"):
        status, first = replies[origin]
        assert status == 101 and first.startswith("0{"), (origin, replies[origin])


@pytest.mark.parametrize("python_name", PYTHON_SOCKETIO)
@pytest.mark.parametrize("transports", ["websocket", "polling,websocket"])
def test_socketio_handshake_is_the_python_servers(
    server_process: Callable[..., ServerProcess],
    node_server: Callable[..., NodeServer],
    python_name: str,
    transports: str,
) -> None:
    """The Engine.IO open packet (heartbeat, message limit, upgrades offered), over the first
    transport allowed, equals python-socketio's but for the session id."""
    python = server_process(python_name, "uvloop", "--transports", transports)
    node = node_server("node-socketio", "--transports", transports)

    async def handshake(port: int) -> dict[str, object]:
        if transports == "websocket":
            async with socketio_session(port) as (_, _, opened):
                packet = opened
        else:
            timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{port}{POLLING_PATH}") as response,
            ):
                body = await response.text()
                assert response.status == 200 and body.startswith("0{"), body
                packet = json.loads(body[1:])
        assert isinstance(packet.pop("sid"), str)
        return packet

    expected = {"pingInterval": 3_600_000, "pingTimeout": 60_000, "maxPayload": 1 << 20}
    node_packet = asyncio.run(handshake(node.port))
    assert node_packet == asyncio.run(handshake(python.port))
    assert {key: node_packet[key] for key in expected} == expected


# --- Replies, frame for frame as the Python servers' ---------------------------------------------

Conversation = Callable[[int], Coroutine[Any, Any, list[Frame]]]

T, B = WSMsgType.TEXT, WSMsgType.BINARY
# (frames sent, replies expected) for one Socket.IO client; binary packets are a placeholder
# text frame plus one binary frame.
SOCKETIO_EXCHANGES: list[tuple[list[Frame], int]] = [
    ([(T, b'42["echo","hello"]')], 1),
    ([(T, b'421["echo","hello"]')], 1),  # an ack, and no echo event
    ([(T, b'42["echo",{"a":[1,2.5,null,true,"x"],"b":{}}]')], 1),
    ([(T, b'451-["echo",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD)], 2),
    ([(T, b'451-7["echo",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD)], 2),  # binary ack
    ([(T, b'42["no such event",1]'), (T, b'42["echo","after"]')], 1),  # unknown: no reply
    ([(T, b'423["join",null]')], 1),  # in the room: ack true
    ([(T, b'42["publish","news"]')], 1),  # the publisher is in the room too
    ([(T, b'424["publish","more"]')], 2),  # fan-out, then an empty ack
    ([(T, b'451-["publish",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD)], 2),
]


async def socketio_one_client(port: int) -> list[Frame]:
    async with socketio_session(port) as (transport, listener, _):
        replies = []
        for frames, count in SOCKETIO_EXCHANGES:
            for kind, data in frames:
                transport.send(kind, data)
            replies += [await listener.next_frame() for _ in range(count)]
        assert await nothing_arrives(listener)
        return replies


async def socketio_receiver_and_publisher(port: int) -> list[Frame]:
    """A receiver in the room gets the publisher's message; the publisher, not in it, nothing."""
    async with (
        socketio_session(port) as (receiver, receiver_frames, _),
        socketio_session(port) as (publisher, publisher_frames, _),
    ):
        receiver.send(T, b'421["join",null]')
        replies = [await receiver_frames.next_frame()]
        publisher.send(T, b'42["publish","to all"]')
        replies.append(await receiver_frames.next_frame())
        assert await nothing_arrives(publisher_frames)
        return replies


async def raw_echo(port: int) -> list[Frame]:
    frames = [(T, "héllo, wörld ✓".encode()), (B, BINARY_PAYLOAD), (T, b""), (B, b"")]
    async with connect(port, "/") as (transport, listener):
        for kind, data in frames:
            transport.send(kind, data)
        return [await listener.next_frame() for _ in frames]


async def raw_fanout(port: int) -> list[Frame]:
    """Two receivers get every message published, text and binary; the publisher gets none."""
    async with (
        connect(port, FAIRNESS.fanout_path) as (_, first),
        connect(port, FAIRNESS.fanout_path) as (_, second),
        connect(port, FAIRNESS.publish_path) as (publisher, published),
    ):
        publisher.send(T, b"news")
        publisher.send(B, BINARY_PAYLOAD)
        replies = [await first.next_frame(), await first.next_frame()]
        replies += [await second.next_frame(), await second.next_frame()]
        assert await nothing_arrives(published)
        return replies


def replies_of_both(
    conversation: Conversation, python: ServerProcess, node: NodeServer
) -> tuple[list[Frame], list[Frame]]:
    return asyncio.run(conversation(python.port)), asyncio.run(conversation(node.port))


@pytest.mark.parametrize("python_name", PYTHON_SOCKETIO)
@pytest.mark.parametrize("conversation", [socketio_one_client, socketio_receiver_and_publisher])
def test_node_socketio_replies_as_python_socketio(
    server_process: Callable[..., ServerProcess],
    node_server: Callable[..., NodeServer],
    python_name: str,
    conversation: Conversation,
) -> None:
    python_replies, node_replies = replies_of_both(
        conversation, server_process(python_name, "uvloop"), node_server("node-socketio")
    )
    assert node_replies == python_replies


def test_socketio_replies_are_the_ones_the_generator_expects(
    node_server: Callable[..., NodeServer],
) -> None:
    """The comparison above would pass were both wrong alike: the replies spelled out."""
    replies = asyncio.run(socketio_one_client(node_server("node-socketio").port))
    binary_echo = [(T, b'451-["echo",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD)]
    assert replies == [
        (T, b'42["echo","hello"]'),
        (T, b'431["hello"]'),
        (T, b'42["echo",{"a":[1,2.5,null,true,"x"],"b":{}}]'),
        *binary_echo,
        (T, b'461-7[' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD),
        (T, b'42["echo","after"]'),
        (T, b"433[true]"),
        (T, b'42["fanout","news"]'),
        (T, b'42["fanout","more"]'), (T, b"434[]"),
        (T, b'451-["fanout",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD),
    ]  # fmt: skip


def test_socketio_text_outside_ascii_differs_in_escaping_only(
    server_process: Callable[..., ServerProcess], node_server: Callable[..., NodeServer]
) -> None:
    """python-socketio writes JSON with ASCII escapes, socket.io raw UTF-8: the same event, not
    the same bytes. The generator's payloads are ASCII letters and digits, where the two agree."""

    async def echo(port: int) -> bytes:
        async with socketio_session(port) as (transport, listener, _):
            transport.send(T, '42["echo","héllo ✓"]'.encode())
            return (await listener.next_frame())[1]

    python_reply = asyncio.run(echo(server_process("socketio_aiohttp", "uvloop").port))
    node_reply = asyncio.run(echo(node_server("node-socketio").port))
    assert python_reply == rb'42["echo","h\u00e9llo \u2713"]'
    assert node_reply == '42["echo","héllo ✓"]'.encode()
    assert json.loads(python_reply[2:]) == json.loads(node_reply[2:])


@pytest.mark.parametrize("python_name", PYTHON_RAW)
@pytest.mark.parametrize("conversation", [raw_echo, raw_fanout])
def test_node_ws_replies_as_the_python_raw_servers(
    server_process: Callable[..., ServerProcess],
    node_server: Callable[..., NodeServer],
    python_name: str,
    conversation: Conversation,
) -> None:
    python_replies, node_replies = replies_of_both(
        conversation, server_process(python_name, "uvloop"), node_server("node-ws")
    )
    assert node_replies == python_replies
    assert node_replies[:2] == (
        [(T, "héllo, wörld ✓".encode()), (B, BINARY_PAYLOAD)]
        if conversation is raw_echo
        else [(T, b"news"), (B, BINARY_PAYLOAD)]
    )


def test_node_ws_echoes_on_any_other_path_as_websockets_does(
    node_server: Callable[..., NodeServer],
) -> None:
    server = node_server("node-ws")

    async def scenario() -> Frame:
        async with connect(server.port, "/any/path?x=1") as (transport, listener):
            transport.send(T, b"here too")
            return await listener.next_frame()

    assert asyncio.run(scenario()) == (T, b"here too")


# --- The project's generator, unchanged --------------------------------------------------------

CLOSED = ("--mode", "closed")
FANOUT = ("--mode", "fanout", "--rate", "200")
GENERATOR_RUNS = {
    "socketio-text": ("node-socketio", "http", "socketio", CLOSED),
    "socketio-binary-ack": (
        "node-socketio", "http", "socketio", (*CLOSED, "--payload-kind", "binary", "--ack")
    ),
    "socketio-fanout": ("node-socketio", "http", "socketio", FANOUT),
    "raw-text": ("node-ws", "ws", "raw", CLOSED),
    "raw-binary": ("node-ws", "ws", "raw", (*CLOSED, "--payload-kind", "binary")),
    "raw-fanout": ("node-ws", "ws", "raw", FANOUT),
}  # fmt: skip


def bench_run(target: str, protocol: str, out: Path, *options: str) -> dict[str, str]:
    """``python -m bench run --target ...`` with 10 connections for 2 s after 1 s of warm-up;
    its one row of runs.csv."""
    argv = [sys.executable, "-m", "bench", "run", "--target", target, "--protocol", protocol,
            "--connections", "10", "--duration", "2", "--warmup", "1", "--out", str(out),
            *options]  # fmt: skip
    result = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "runs.csv", newline="") as stream:
        (row,) = csv.DictReader(stream)
    return row


@pytest.mark.parametrize("run", GENERATOR_RUNS)
def test_the_generator_drives_a_node_server_through_target(
    node_server: Callable[..., NodeServer], run: str, tmp_path: Path
) -> None:
    name, scheme, protocol, options = GENERATOR_RUNS[run]
    server = node_server(name)
    row = bench_run(f"{scheme}://127.0.0.1:{server.port}/", protocol, tmp_path / "out", *options)
    assert (row["status"], row["failure"], row["errors"]) == ("ok", "", "0")
    received = row["delivered"] if "fanout" in run else row["received"]
    assert int(float(received)) > 0


def test_one_pass_of_both_node_servers_gives_their_ratio_an_interval(tmp_path: Path) -> None:
    """Issue 17's first "done when": the two Node servers, one pass, closed loop, time-sliced
    (the default with several servers): summary.csv has node-socketio/node-ws with an interval
    over the pass's rounds, and the per-round counts add up to what was received."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bench", "run", "--servers", "node-socketio,node-ws",
            "--mode", "closed", "--connections", "10", "--duration", "3", "--warmup", "1",
            "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "runs.csv", newline="") as stream:
        rows = {row["server"]: row for row in csv.DictReader(stream)}
    assert set(rows) == {"node-socketio", "node-ws"}
    for row in rows.values():
        assert (row["status"], row["errors"], row["missing"]) == ("ok", "0", "0")
        rounds = [int(n) for n in row["round_msgs"].split()]
        assert len(rounds) == 30  # 3 s in 0.1-s slices
        assert sum(rounds) == int(row["received"]) > 0
    with open(out / "summary.csv", newline="") as stream:
        summary = {row["server"]: row for row in csv.DictReader(stream)}
    sio = summary["node-socketio"]
    base = "throughput_ratio_vs_node-ws"
    median, low, high = (float(sio[f"{base}_{s}"]) for s in ("median", "ci_low", "ci_high"))
    assert sio["throughput_ratio_interval_over"] == "rounds"
    assert low <= median <= high and low < high
    # The pass's own ratio: one throughput over the other, as runs.csv has them.
    expected = float(rows["node-socketio"]["throughput_msgs_s"]) / float(
        rows["node-ws"]["throughput_msgs_s"]
    )
    assert median == pytest.approx(expected, rel=1e-3)
