"""Issue 8, item 6, against the running servers: they listen on 127.0.0.1 unless ``--host`` says
otherwise, a port in use is one line and exit 2, and the Socket.IO servers refuse a
WebSocket handshake from another origin (python-engineio's default, same origin only, which the
servers keep by not setting ``cors_allowed_origins``)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import aiohttp
import psutil
import pytest

from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, TIME_FACTOR, read_ready_port, stop_process

pytestmark = pytest.mark.integration

ALL_SERVERS = ("websockets", "aiohttp", "socketio_aiohttp", "socketio_asgi")
SOCKETIO_SERVERS = ("socketio_aiohttp", "socketio_asgi")
NETWORK_TIMEOUT_S = 5.0 * TIME_FACTOR
SOCKETIO_WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"


@pytest.fixture
def server_without_host() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Starts ``python -m servers.NAME --port 0`` with no ``--host``, as a user would."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", f"servers.{name}", "--port", "0"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_a_server_listens_on_loopback_only_by_default(
    name: str, server_without_host: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    process = server_without_host(name)
    port = read_ready_port(process, READY_TIMEOUT_S)
    listening = [
        c.laddr for c in psutil.Process(process.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    ]  # fmt: skip
    assert listening and {address.ip for address in listening} == {"127.0.0.1"}
    assert {address.port for address in listening} == {port}


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_a_port_in_use_is_one_line_and_exit_2(name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", f"servers.{name}", "--port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=READY_TIMEOUT_S,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # no READY line
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in line.lower()  # the wording is the event loop's


async def websocket_handshake(port: int, origin: str | None) -> tuple[int, str]:
    """The HTTP status of a Socket.IO WebSocket handshake sent with ``origin`` (none: no
    Origin header, as non-browser clients send), and the first frame when it succeeded."""
    timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.ws_connect(
                f"http://127.0.0.1:{port}{SOCKETIO_WEBSOCKET}", origin=origin
            ) as websocket:
                first = await websocket.receive_str()
                return 101, first
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, ""


@pytest.mark.parametrize("name", SOCKETIO_SERVERS)
def test_a_socketio_server_refuses_a_handshake_from_another_origin(
    name: str, start_server: Callable[[str, str], int]
) -> None:
    port = start_server(name, "uvloop")

    async def scenario() -> dict[str, tuple[int, str]]:
        return {
            origin: await websocket_handshake(port, origin or None)
            for origin in ("http://evil.example", "https://127.0.0.1.evil.example",
                           "", f"http://127.0.0.1:{port}")
        }  # fmt: skip

    replies = asyncio.run(scenario())
    # Refused before the upgrade: aiohttp's host answers 400, uvicorn 403.
    assert replies["http://evil.example"][0] in (400, 403)
    assert replies["https://127.0.0.1.evil.example"][0] in (400, 403)
    # The same check lets through clients without an Origin (the generator) and the same origin.
    for origin in ("", f"http://127.0.0.1:{port}"):
        status, first = replies[origin]
        assert status == 101 and first.startswith("0{"), (origin, replies[origin])
