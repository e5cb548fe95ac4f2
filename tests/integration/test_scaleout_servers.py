"""Issue 18, the servers' side: several processes of one server on one port (--reuse-port, or a
listening socket handed over with --listen-fd), each naming itself to its fan-out connections
(--worker-id), a real Redis between them (--broker-url). Every server of the registry that
scales out, the Node ones too. Real processes on loopback only; every process is stopped
whatever happens."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager

import picows
import psutil
import pytest
from picows import WSMsgType

from bench.catalog import SERVERS
from servers.common import (
    FAIRNESS,
    listening_socket,
    parse_worker_announcement,
    worker_announcement,
)
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, TIME_FACTOR, read_ready_port, stop_process
from tests.integration.test_listen_backlog import expected as expected_backlog
from tests.integration.test_servers import (
    BINARY_PAYLOAD,
    NETWORK_TIMEOUT_S,
    FrameRecorder,
    connect,
    socketio_session,
)
from tests.node import require_node

pytestmark = pytest.mark.integration

# Every server that runs as several processes behind a broker, by its registry name.
SCALING_SERVERS = [name for name, info in SERVERS.items() if info.scales_out]

T, B = WSMsgType.TEXT, WSMsgType.BINARY
Frame = tuple[WSMsgType, bytes]
WORKERS = 2
# Connections opened, at most, until the kernel has put one on each worker.
MAX_RECEIVER_ATTEMPTS = 200
# How long a receiver must stay silent after its last expected frame (no duplicates).
QUIET_S = 0.3 * TIME_FACTOR
# Publishers sending at once, and messages each, for the broker-connection count.
BURST_PUBLISHERS = 20
BURST_MESSAGES = 20
# A server that cannot reach its broker must have said so and left within this.
UNREACHABLE_EXIT_S = 5.0 * TIME_FACTOR
REDIS_MISSING = "redis-server not installed (apt-get install redis-server)"

PLACEHOLDER = b'{"_placeholder":true,"num":0}'
# Socket.IO: join (ack id 1), the worker event (ack id 2), the published text and binary.
JOIN = f'421["{FAIRNESS.socketio_join_event}",null]'.encode()
WORKER = f'422["{FAIRNESS.socketio_worker_event}",null]'.encode()
PUBLISH_TEXT = f'42["{FAIRNESS.socketio_publish_event}","news"]'.encode()
PUBLISH_BINARY = f'451-["{FAIRNESS.socketio_publish_event}",'.encode() + PLACEHOLDER + b"]"
FANOUT = FAIRNESS.socketio_fanout_event.encode()


# --- Processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, for the module's tests."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("WSBENCH_REQUIRE_REDIS") == "1":
            pytest.fail(REDIS_MISSING)
        pytest.skip(REDIS_MISSING)
    port = free_port()
    args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer PING")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


@pytest.fixture(params=SCALING_SERVERS)
def name(request: pytest.FixtureRequest) -> str:
    """A server that scales out; a Node one is skipped (one line naming what to install)
    without Node.js or its packages, which it installs the first time."""
    server: str = request.param
    if SERVERS[server].runtime == "node":
        require_node()
    return server


def server_args(name: str, *extra: str) -> list[str]:
    """The registry's command for ``name`` with the common arguments, as the harness runs it."""
    loops = SERVERS[name].loops
    loop = "uvloop" if "uvloop" in loops else loops[0]
    return [*SERVERS[name].argv(), "--host", "127.0.0.1", "--loop", loop, *extra]


@contextmanager
def running(name: str, *extra: str, port: int = 0, shared: bool = False) -> Iterator[int]:
    """``name`` with ``extra`` arguments on ``port`` (0: a free one) until the block ends; yields
    its port. ``shared``: it shares the port with other processes as the harness has it do: with
    --reuse-port, or, for a server that takes its listening socket (the registry's listen_fd),
    on a socket bound here with SO_REUSEPORT and handed over (--listen-fd), whose copy here is
    closed once the process has it."""
    listener = None
    if shared and SERVERS[name].listen_fd:
        listener = listening_socket("127.0.0.1", port, reuse_port=True)
        port = listener.getsockname()[1]
        where = ["--port", str(port), "--listen-fd", str(listener.fileno())]
    else:
        where = ["--port", str(port), *(["--reuse-port"] if shared else [])]
    try:
        # stderr is inherited, so pytest shows the server's errors with a failing test.
        process = subprocess.Popen(
            server_args(name, *where, *extra), cwd=REPO_ROOT, stdout=subprocess.PIPE,
            pass_fds=() if listener is None else (listener.fileno(),),
        )  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
    try:
        yield read_ready_port(process, READY_TIMEOUT_S)
    finally:
        code = stop_process(process)
    if code != 0:
        raise RuntimeError(f"{name} {' '.join(extra)} did not stop cleanly: exit {code}")


@contextmanager
def workers_on_one_port(name: str, broker_url: str) -> Iterator[int]:
    """WORKERS processes as the harness starts them: the first on port 0, the others on the
    port it got; all stopped when the block ends."""
    with ExitStack() as stack:
        port = 0
        for worker_id in range(WORKERS):
            flags = ("--worker-id", str(worker_id), "--broker-url", broker_url)
            port = stack.enter_context(running(name, *flags, port=port, shared=True))
        yield port


def raw(name: str) -> bool:
    return SERVERS[name].protocol == "raw"


# --- Clients ---------------------------------------------------------------------------------


async def quiet(listener: FrameRecorder) -> bool:
    """Nothing more arrives within QUIET_S."""
    try:
        frame = await asyncio.wait_for(listener.frames.get(), QUIET_S)
    except TimeoutError:
        return True
    listener.frames.put_nowait(frame)
    return False


async def frames(listener: FrameRecorder, count: int) -> list[Frame]:
    return [await listener.next_frame() for _ in range(count)]


def socketio_worker(ack: bytes, ack_id: int) -> int:
    prefix = f"43{ack_id}[".encode()
    assert ack.startswith(prefix) and ack.endswith(b"]"), ack
    return int(ack[len(prefix) : -1])


async def open_receiver(stack: AsyncExitStack, name: str, port: int) -> tuple[int, FrameRecorder]:
    """A fan-out receiver, joined, and the worker it says it is on."""
    if raw(name):
        _, listener = await stack.enter_async_context(connect(port, FAIRNESS.fanout_path))
        kind, data = await listener.next_frame()
        worker = parse_worker_announcement(data)
        assert kind is T and worker is not None, data
        return worker, listener
    transport, listener, _ = await stack.enter_async_context(socketio_session(port))
    transport.send(T, JOIN)
    return socketio_worker((await listener.next_frame())[1], 1), listener


async def open_publisher(
    stack: AsyncExitStack, name: str, port: int
) -> tuple[int, picows.WSTransport, FrameRecorder]:
    """The publishing connection, and the worker it says it is on."""
    if raw(name):
        transport, listener = await stack.enter_async_context(connect(port, FAIRNESS.publish_path))
        kind, data = await listener.next_frame()
        worker = parse_worker_announcement(data)
        assert kind is T and worker is not None, data
        return worker, transport, listener
    transport, listener, _ = await stack.enter_async_context(socketio_session(port))
    transport.send(T, WORKER)
    return socketio_worker((await listener.next_frame())[1], 2), transport, listener


def publish_text_and_binary(name: str, transport: picows.WSTransport) -> list[Frame]:
    """Publish one text and one binary message; the frames every receiver must get."""
    if raw(name):
        transport.send(T, b"news")
        transport.send(B, BINARY_PAYLOAD)
        return [(T, b"news"), (B, BINARY_PAYLOAD)]
    transport.send(T, PUBLISH_TEXT)
    transport.send(T, PUBLISH_BINARY)
    transport.send(B, BINARY_PAYLOAD)
    return [(T, b'42["' + FANOUT + b'","news"]'),
            (T, b'451-["' + FANOUT + b'",' + PLACEHOLDER + b"]"), (B, BINARY_PAYLOAD)]  # fmt: skip


# --- Several processes, one port, one broker -------------------------------------------------


def test_workers_on_one_port_deliver_every_broadcast_once_to_both(
    broker_url: str, name: str
) -> None:
    async def scenario(port: int) -> None:
        async with AsyncExitStack() as stack:
            receivers: list[tuple[int, FrameRecorder]] = []
            for _ in range(MAX_RECEIVER_ATTEMPTS):
                receivers.append(await open_receiver(stack, name, port))
                if {worker for worker, _ in receivers} == set(range(WORKERS)):
                    break
            seen = sorted({worker for worker, _ in receivers})
            assert seen == list(range(WORKERS)), f"{len(receivers)} receivers, workers {seen}"
            publisher_worker, transport, published = await open_publisher(stack, name, port)
            assert publisher_worker in range(WORKERS)
            expected = publish_text_and_binary(name, transport)
            for worker, listener in receivers:
                assert await frames(listener, len(expected)) == expected, f"worker {worker}"
            for worker, listener in receivers:
                assert await quiet(listener), f"a duplicate on worker {worker}"
            assert await quiet(published), "the publisher got a broadcast"

    with workers_on_one_port(name, broker_url) as port:
        asyncio.run(asyncio.wait_for(scenario(port), 30 * NETWORK_TIMEOUT_S))


@pytest.mark.parametrize("scale_out", [False, True], ids=["plain", "broker-without-worker-id"])
def test_without_worker_id_the_fanout_conversation_is_unchanged(
    broker_url: str, name: str, scale_out: bool
) -> None:
    """No announcement: a receiver's first frame is the broadcast, the join acks true, and
    the publisher hears nothing."""
    extra = ("--broker-url", broker_url) if scale_out else ()

    async def scenario(port: int) -> None:
        async with AsyncExitStack() as stack:
            if raw(name):
                _, listener = await stack.enter_async_context(connect(port, FAIRNESS.fanout_path))
                transport, published = await stack.enter_async_context(
                    connect(port, FAIRNESS.publish_path)
                )
                # A receiver's connection is registered when its handler runs; give it a moment
                # by a round trip on another connection of the same server.
                async with connect(port, "/") as (echo, echoed):
                    echo.send(T, b"ping")
                    assert await echoed.next_frame() == (T, b"ping")
            else:
                receiver, listener, _ = await stack.enter_async_context(socketio_session(port))
                receiver.send(T, JOIN)
                assert await listener.next_frame() == (T, b"431[true]")
                transport, published, _ = await stack.enter_async_context(socketio_session(port))
            expected = publish_text_and_binary(name, transport)
            assert await frames(listener, len(expected)) == expected
            assert await quiet(listener)
            assert await quiet(published)

    with running(name, *extra, shared=scale_out) as port:
        asyncio.run(asyncio.wait_for(scenario(port), 10 * NETWORK_TIMEOUT_S))


def broker_connections(port: int, broker_url: str) -> int:
    """The TCP connections to the broker of the process listening on ``port``."""
    broker_port = int(broker_url.rsplit(":", 1)[1].split("/")[0])
    (pid,) = {c.pid for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and c.laddr.port == port}  # fmt: skip
    # An unconnected socket's raddr is an empty tuple.
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.raddr and c.raddr[1] == broker_port)  # fmt: skip


def test_a_burst_of_publishes_keeps_one_publishing_connection(broker_url: str, name: str) -> None:
    """Each process holds two connections to the broker, one subscribed and one to publish on,
    however many publishes are waiting at once: a pool that opens one per waiting publish ran
    python-socketio out of connections at 50,000 clients (servers/broker.py PUBLISHING)."""

    async def scenario(port: int) -> None:
        async with AsyncExitStack() as stack:
            if raw(name):
                _, receiver = await stack.enter_async_context(connect(port, FAIRNESS.fanout_path))
                async with connect(port, "/") as (echo, echoed):  # the receiver is registered
                    echo.send(T, b"ping")
                    assert await echoed.next_frame() == (T, b"ping")
                message, delivered = b"news", (T, b"news")
            else:
                joining, receiver, _ = await stack.enter_async_context(socketio_session(port))
                joining.send(T, JOIN)
                assert await receiver.next_frame() == (T, b"431[true]")
                message, delivered = PUBLISH_TEXT, (T, b'42["' + FANOUT + b'","news"]')
            publishers = []
            for _ in range(BURST_PUBLISHERS):
                if raw(name):
                    transport, _ = await stack.enter_async_context(
                        connect(port, FAIRNESS.publish_path)
                    )
                else:
                    transport, _, _ = await stack.enter_async_context(socketio_session(port))
                publishers.append(transport)
            for _ in range(BURST_MESSAGES):
                for transport in publishers:
                    transport.send(T, message)
            total = BURST_PUBLISHERS * BURST_MESSAGES
            assert await frames(receiver, total) == [delivered] * total
            assert broker_connections(port, broker_url) == 2

    with running(name, "--broker-url", broker_url, shared=True) as port:
        asyncio.run(asyncio.wait_for(scenario(port), 30 * NETWORK_TIMEOUT_S))


def test_processes_on_one_port_each_listen_with_the_contracts_backlog(
    broker_url: str, name: str
) -> None:
    """One listening socket a process (the kernel spreads connections over them), each with
    the contract's accept queue: a socket handed over (--listen-fd) keeps it too."""
    with workers_on_one_port(name, broker_url) as port:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10,
            check=True,
        ).stdout  # fmt: skip
    backlogs = [int(line.split()[2]) for line in out.splitlines() if line.strip()]
    assert backlogs == [expected_backlog()] * WORKERS


def test_worker_announcement_is_the_exact_text_frame() -> None:
    assert worker_announcement(0) == b"worker 0"
    assert worker_announcement(1023) == b"worker 1023"
    assert parse_worker_announcement(b"worker 7") == 7
    for other in (b"worker ", b"worker 07", b"worker -1", b"worker 1024", b"news", b"worker 1 "):
        assert parse_worker_announcement(other) is None


# --- Refusals --------------------------------------------------------------------------------


def test_an_unreachable_broker_exits_2_with_one_line(name: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        server_args(name, "--port", "0", "--broker-url", url), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=UNREACHABLE_EXIT_S + READY_TIMEOUT_S,
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert result.returncode == 2
    assert result.stdout == ""  # no READY
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the broker at {url}: "), line
    assert elapsed_s < UNREACHABLE_EXIT_S


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--worker-id", "-1"), "--worker-id: an integer from 0 to 1023"),
        (("--worker-id", "1024"), "--worker-id: an integer from 0 to 1023"),
        (("--broker-url", "http://x"), "--broker-url: redis://HOST:PORT/DB expected"),
        (("--broker-url", "redis://"), "--broker-url: redis://HOST:PORT/DB expected"),
        (("--broker-url", "redis://h:99999/0"), "--broker-url: redis://HOST:PORT/DB expected"),
        (("--broker-url", "redis://h:1/db"), "--broker-url: redis://HOST:PORT/DB expected"),
    ],
)
def test_bad_scale_out_values_exit_2_with_one_error_line(
    name: str, flags: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        server_args(name, "--port", "0", *flags), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]


def test_help_documents_the_scale_out_options(name: str) -> None:
    result = subprocess.run(
        server_args(name, "--help"), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0
    for option in ("--reuse-port", "--worker-id", "--broker-url"):
        assert option in result.stdout
