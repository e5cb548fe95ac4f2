"""Issue 17, item 3: Node's own clients (socket.io-client 4, ws 8) against every server under test.

The generator speaks the protocols itself; these runs check that the servers also serve real
clients with those clients' defaults: text, binary, acks and fan-out; for Socket.IO also
long-polling and the default path (polling, then the upgrade to WebSocket); and no
permessage-deflate although both clients offer it. servers/node/interop_client.js does the
exchanges and prints a JSON summary; a mismatch is its exit status 1 and fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, TIME_FACTOR, ServerProcess
from tests.node import NODE_DIR, installed_versions, require_node, running_node_server

pytestmark = pytest.mark.integration

# Each exchange waits at most this long; the whole client run at most a few times that.
EXCHANGE_TIMEOUT_S = 5.0 * TIME_FACTOR
CLIENT_TIMEOUT_S = 6 * EXCHANGE_TIMEOUT_S
PYTHON_SOCKETIO = ("socketio_aiohttp", "socketio_asgi")
PYTHON_RAW = ("websockets", "aiohttp")
SOCKETIO_CHECKS = ["text", "binary", "text_ack", "binary_ack", "join_ack", "fanout"]
RAW_CHECKS = ["text", "binary", "fanout_text", "fanout_binary"]
# Client transports -> the paths the client takes (interop_client.js's sessions).
SOCKETIO_PATHS = {
    "websocket": ["websocket then websocket"],
    "polling,websocket": ["polling then polling", "polling then websocket"],
}


@pytest.fixture(autouse=True)
def _node_installed() -> None:
    require_node()


def interop(protocol: str, url: str, *extra: str) -> dict[str, Any]:
    """Run servers/node/interop_client.js; its summary, or the test fails with its mismatch."""
    env = {**os.environ, "WSBENCH_INTEROP_TIMEOUT_MS": str(int(EXCHANGE_TIMEOUT_S * 1000))}
    result = subprocess.run(
        ["node", str(NODE_DIR / "interop_client.js"), protocol, url, *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"{protocol} client against {url}: {result.stderr.strip()}", pytrace=False)
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def check_socketio(summary: dict[str, Any], transports: str) -> None:
    assert summary["client"] == f"socket.io-client {installed_versions()['socket.io-client']}"
    assert [r["path"] for r in summary["rounds"]] == SOCKETIO_PATHS[transports]
    for round_ in summary["rounds"]:
        assert round_["checks"] == dict.fromkeys(SOCKETIO_CHECKS, "ok")
    assert summary["extensions"] == ""  # offered by the client, refused by the server


def check_raw(summary: dict[str, Any]) -> None:
    assert summary["client"] == f"ws {installed_versions()['ws']}"
    (round_,) = summary["rounds"]
    assert round_["checks"] == dict.fromkeys(RAW_CHECKS, "ok")
    assert summary["extensions"] == ""


@pytest.mark.parametrize("transports", SOCKETIO_PATHS)
@pytest.mark.parametrize("name", PYTHON_SOCKETIO)
def test_socketio_client_against_python_socketio(
    start_server: Callable[..., int], name: str, transports: str
) -> None:
    # The server allows what the client will use: the contract's WebSocket only, or polling too.
    port = start_server(name, "uvloop", "--transports", transports)
    check_socketio(interop("socketio", f"http://127.0.0.1:{port}", "--transports", transports),
                   transports)  # fmt: skip


@pytest.mark.parametrize("name", PYTHON_RAW)
def test_ws_client_against_python_raw_servers(start_server: Callable[..., int], name: str) -> None:
    port = start_server(name, "uvloop")
    check_raw(interop("raw", f"ws://127.0.0.1:{port}"))


# The Node servers with their own ecosystem's clients: the same checks.


@pytest.mark.parametrize("transports", SOCKETIO_PATHS)
def test_socketio_client_against_node_socketio(transports: str) -> None:
    with running_node_server("node-socketio", "--transports", transports) as server:
        url = f"http://127.0.0.1:{server.port}"
        check_socketio(interop("socketio", url, "--transports", transports), transports)


def test_ws_client_against_node_ws() -> None:
    with running_node_server("node-ws") as server:
        check_raw(interop("raw", f"ws://127.0.0.1:{server.port}"))


def test_a_mismatch_fails(server_process: Callable[..., ServerProcess]) -> None:
    """The client is not a rubber stamp: a Socket.IO client at a raw echo server gets no
    Engine.IO handshake and exits 1 naming what it waited for."""
    port = server_process("websockets", "uvloop").port
    result = subprocess.run(
        ["node", str(NODE_DIR / "interop_client.js"), "socketio", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
        env={**os.environ, "WSBENCH_INTEROP_TIMEOUT_MS": "2000"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("mismatch: ")
