"""The shipped tier (--tier shipped) on every server of the registry: what each accepts and offers
when left to its library's defaults, checked against servers/shipped.py's record of them, and
the record itself against the libraries. Real processes on loopback only, every one stopped.

The equalised tier's refusals (no deflate, no polling, the contract's heartbeat and limits) are
tests/integration/test_servers.py's and test_node_servers.py's."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from picows import WSCloseCode, WSMsgType
from websockets.asyncio import server as websockets_server

from bench.catalog import SERVERS
from servers import shipped
from servers.common import FAIRNESS
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT
from tests.integration.test_scaleout_servers import running, server_args
from tests.integration.test_servers import (
    NETWORK_TIMEOUT_S,
    POLLING_PATH,
    SOCKETIO_PATH,
    FrameRecorder,
    connect,
    offered_deflate_reply,
    oversized_text_frame_header,
    wait_closed_by_server,
)
from tests.node import runnable_server

pytestmark = pytest.mark.integration

T = WSMsgType.TEXT
RAW = [name for name, info in SERVERS.items() if info.protocol == "raw"]
SOCKETIO = [name for name, info in SERVERS.items() if info.protocol == "socketio"]
# What each server answers to a permessage-deflate offer when left to its library: the four
# Python servers accept it, Node's ws and socket.io servers ship with it off.
NEGOTIATES_DEFLATE = {
    "websockets": True, "aiohttp": True, "socketio-aiohttp": True, "socketio-asgi": True,
    "node-ws": False, "node-socketio": False,
}  # fmt: skip
# Over the contract's 1 MiB and under aiohttp's 4 MiB and ws's 100 MiB.
LARGE_MESSAGE_BYTES = 2 << 20


@pytest.fixture(params=list(SERVERS))
def name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


@pytest.fixture(params=RAW)
def raw_name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


@pytest.fixture(params=SOCKETIO)
def socketio_name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


def path_of(name: str) -> str:
    return "/" if SERVERS[name].protocol == "raw" else SOCKETIO_PATH


# --- Compression -----------------------------------------------------------------------------


def test_a_deflate_offer_is_answered_as_the_library_ships(name: str) -> None:
    """Only the handshake's answer is read: picows cannot decompress, so no data frame is sent
    on a connection that negotiated deflate."""
    with running(name, "--tier", "shipped") as port:
        reply = asyncio.run(offered_deflate_reply(port, path_of(name)))
    record = shipped.shipped_settings(name)
    if NEGOTIATES_DEFLATE[name]:
        assert reply is not None and reply.startswith("permessage-deflate"), reply
        assert record["compression"] == shipped.DEFLATE
    else:
        assert reply is None
        assert record["compression"] == shipped.OFF


# --- Engine.IO: long-polling, the upgrade, the heartbeat ---------------------------------------


async def next_packet(listener: FrameRecorder) -> bytes:
    """The next text frame but Engine.IO noops (``6``, which end a poll during an upgrade)."""
    while True:
        kind, packet = await listener.next_frame()
        assert kind is T
        if packet != b"6":
            return packet


def test_socketio_servers_poll_and_upgrade_with_the_library_heartbeat(socketio_name: str) -> None:
    """The Engine.IO open packet of a long-polling handshake offers the upgrade and carries the
    library's heartbeat and limit; the upgrade then works as a client does it (probe, upgrade,
    connect, an echo event)."""

    async def scenario(port: int) -> tuple[dict[str, Any], list[bytes]]:
        timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://127.0.0.1:{port}{POLLING_PATH}") as response,
        ):
            assert response.status == 200
            body = await response.text()
        assert body.startswith("0{"), body
        handshake = json.loads(body[1:])
        upgrade = f"{SOCKETIO_PATH}&sid={handshake['sid']}"
        async with connect(port, upgrade) as (transport, listener):
            transport.send(T, b"2probe")
            replies = [await next_packet(listener)]
            transport.send(T, b"5")  # upgrade
            transport.send(T, b"40")  # Socket.IO connect, namespace "/"
            replies.append((await next_packet(listener))[:3])
            transport.send(T, b'42["echo","upgraded"]')
            replies.append(await next_packet(listener))
        return handshake, replies

    with running(socketio_name, "--tier", "shipped") as port:
        handshake, replies = asyncio.run(scenario(port))
    assert replies == [b"3probe", b"40{", b'42["echo","upgraded"]']
    record = shipped.shipped_settings(socketio_name)
    assert handshake["upgrades"] == ["websocket"]
    assert record["socketio_transports"] == ["polling", "websocket"]
    assert record["socketio_allow_upgrades"] is True
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (25_000, 20_000)
    assert record["engineio_ping_interval_s"] == handshake["pingInterval"] / 1000
    assert record["engineio_ping_timeout_s"] == handshake["pingTimeout"] / 1000
    assert handshake["maxPayload"] == record["max_message_bytes"] == 1_000_000


def test_transports_named_in_the_shipped_tier_are_kept(socketio_name: str) -> None:
    """--transports still decides when given: websocket only refuses long-polling."""

    async def scenario(port: int) -> int:
        timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://127.0.0.1:{port}{POLLING_PATH}") as response,
        ):
            return response.status

    with running(socketio_name, "--tier", "shipped", "--transports", "websocket") as port:
        assert asyncio.run(scenario(port)) == 400


# --- Message size limits ---------------------------------------------------------------------


def test_raw_servers_take_messages_up_to_their_library_limit(raw_name: str) -> None:
    """A 2 MiB message (over the contract's 1 MiB): echoed by a library that ships a larger
    limit (aiohttp 4 MiB, ws 100 MiB), refused with 1009 by one whose limit is smaller
    (websockets' 1 MiB), as the record says."""
    limit = shipped.shipped_settings(raw_name)["max_message_bytes"]
    assert isinstance(limit, int)
    message = b"x" * LARGE_MESSAGE_BYTES

    async def scenario(port: int) -> object:
        async with connect(port, "/") as (transport, listener):
            if limit < LARGE_MESSAGE_BYTES:
                # Only the header, as test_servers' over-the-limit test does (a whole payload
                # races with the server's close).
                transport.underlying_transport.write(
                    oversized_text_frame_header(LARGE_MESSAGE_BYTES)
                )
                await wait_closed_by_server(transport)
                return listener.close_code
            transport.send(T, message)
            return await listener.next_frame()

    with running(raw_name, "--tier", "shipped") as port:
        outcome = asyncio.run(scenario(port))
    if limit < LARGE_MESSAGE_BYTES:
        assert outcome is WSCloseCode.MESSAGE_TOO_BIG
    else:
        assert outcome == (T, message)


# --- The records -----------------------------------------------------------------------------


def test_every_server_of_the_registry_has_a_record_with_every_field() -> None:
    assert set(shipped.NAMES) == set(SERVERS)
    for name, info in SERVERS.items():
        record = shipped.shipped_settings(name)
        fields = set(shipped.COMMON_FIELDS)
        if info.protocol == "socketio":
            fields |= set(shipped.SOCKETIO_FIELDS)
        assert set(record) == fields, name
        assert record["tier"] == "shipped" and record["server"] == name
        # The library is the registry's first package, and its version the installed one (Node's
        # only where its packages are installed).
        assert record["library"] == info.packages[0]
        installed = info.versions()[info.packages[0]]
        assert record["library_version"] == installed
        if info.runtime == "node" and installed is not None:
            # The Node defaults were read in the installed versions' sources.
            assert "CHECK AGAIN" not in str(record["source"]), record["source"]
        assert record["compression"] in (shipped.DEFLATE, shipped.OFF)
        assert isinstance(record["max_message_bytes"], int)


def test_an_unknown_server_has_no_record() -> None:
    with pytest.raises(ValueError, match="no server named 'nginx'"):
        shipped.shipped_settings("nginx")


def test_the_equalised_record_is_the_contract() -> None:
    record = shipped.equalised_settings()
    assert record["tier"] == "equalised"
    settings = set(shipped.COMMON_FIELDS + shipped.SOCKETIO_FIELDS)
    assert settings - {"server", "library", "library_version", "libraries"} == set(record)
    contract = FAIRNESS.as_dict()
    for field, value in record.items():
        if field in contract:
            expected = contract[field]
            assert value == (list(expected) if isinstance(expected, tuple) else expected), field


def defaults(callable_: Any) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(callable_).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def test_the_python_records_are_what_the_libraries_signatures_say() -> None:
    """What websockets, aiohttp and uvicorn ship, read here independently of servers/shipped.py.
    websockets' pings are checked here, not on the wire: its 20-s interval outlasts a test."""
    serve = defaults(websockets_server.serve)
    record = shipped.shipped_settings("websockets")
    assert (record["websocket_ping_interval_s"], record["websocket_ping_timeout_s"]) == (
        serve["ping_interval"], serve["ping_timeout"],
    )  # fmt: skip
    assert record["websocket_ping_interval_s"] == 20.0
    assert serve["compression"] == "deflate" and record["max_message_bytes"] == serve["max_size"]

    response = defaults(web.WebSocketResponse)
    record = shipped.shipped_settings("aiohttp")
    assert response["compress"] is True and response["heartbeat"] is None
    assert record["websocket_ping_interval_s"] is None
    assert record["max_message_bytes"] == response["max_msg_size"]

    config = defaults(uvicorn.Config)
    record = shipped.shipped_settings("socketio-asgi")
    assert config["ws_per_message_deflate"] is True
    assert record["websocket_ping_interval_s"] == config["ws_ping_interval"]
    assert record["websocket_ping_timeout_s"] == config["ws_ping_timeout"]


# --- Bad flags -------------------------------------------------------------------------------


def test_an_unknown_tier_is_a_usage_error(name: str) -> None:
    result = subprocess.run(
        server_args(name, "--port", "0", "--tier", "tuned"), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1] and "--tier" in errors[0], lines


def test_a_server_without_tiers_refuses_shipped_and_tls_in_one_line() -> None:
    """The calibration echo server shares the command line but has no tier of its own."""
    for flags in (("--tier", "shipped"), ("--tls-cert", "cert.pem", "--tls-key", "key.pem")):
        result = subprocess.run(
            [sys.executable, "-m", "bench.load.echo_server", "--port", "0", *flags],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=READY_TIMEOUT_S,
        )  # fmt: skip
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            "error: this server has no tier but the contract's, and no TLS"
        ]
