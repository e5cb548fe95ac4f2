"""TLS on every server of the registry (--tls-cert/--tls-key), with certificates from bench.tls:
wss:// echoes verified byte for byte in both tiers, TLS 1.3, a client that does not trust the
CA refused, https:// long-polling on the Socket.IO servers, TLS together with port sharing,
and the bad flag combinations. Real processes on loopback only, every one stopped."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import picows
import pytest
from picows import WSMsgType

from bench.catalog import SERVERS
from bench.tls import Certificates, client_context, describe, make_certificates
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT
from tests.integration.test_scaleout_servers import running, server_args
from tests.integration.test_servers import (
    BINARY_PAYLOAD,
    NETWORK_TIMEOUT_S,
    POLLING_PATH,
    SOCKETIO_PATH,
    Frame,
    FrameRecorder,
)
from tests.node import runnable_server

pytestmark = pytest.mark.integration

T, B = WSMsgType.TEXT, WSMsgType.BINARY
TIERS = ("equalised", "shipped")
SOCKETIO = [name for name, info in SERVERS.items() if info.protocol == "socketio"]
SCALING = [name for name, info in SERVERS.items() if info.scales_out]
# ASCII: python-socketio's JSON escapes other characters, socket.io's does not.
SOCKETIO_ECHO = b'42["echo","hello over tls"]'
# Connections opened through a port that two processes share, each echoing once.
SHARED_PORT_CONNECTIONS = 8


def tls_flags(certificates: Certificates) -> tuple[str, ...]:
    return ("--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key))


@pytest.fixture(params=list(SERVERS))
def name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


@pytest.fixture(params=SOCKETIO)
def socketio_name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


@pytest.fixture(params=SCALING)
def scaling_name(request: pytest.FixtureRequest) -> str:
    return runnable_server(request.param)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


# --- Clients ---------------------------------------------------------------------------------


@asynccontextmanager
async def wss_connect(
    port: int, path: str, context: ssl.SSLContext
) -> AsyncIterator[tuple[picows.WSTransport, FrameRecorder]]:
    """tests.integration.test_servers.connect over wss:// with ``context``."""
    transport, listener = await asyncio.wait_for(
        picows.ws_connect(FrameRecorder, f"wss://127.0.0.1:{port}{path}", ssl_context=context),
        NETWORK_TIMEOUT_S,
    )
    assert isinstance(listener, FrameRecorder)
    try:
        yield transport, listener
    finally:
        transport.disconnect()
        await asyncio.wait_for(transport.wait_disconnected(), NETWORK_TIMEOUT_S)


def tls_of(transport: picows.WSTransport) -> tuple[str, str]:
    return describe(transport.underlying_transport.get_extra_info("ssl_object"))


async def echo_over_wss(name: str, port: int, context: ssl.SSLContext) -> tuple[str, list[Frame]]:
    """One connection's TLS version and the replies to the echoes sent on it: text and binary
    on "/" for a raw server; Engine.IO open, Socket.IO connect and an echo event for a Socket.IO
    one (tests.integration.test_servers.socketio_session, over wss://)."""
    if SERVERS[name].protocol == "raw":
        async with wss_connect(port, "/", context) as (transport, listener):
            transport.send(T, "héllo ✓".encode())
            transport.send(B, BINARY_PAYLOAD)
            return tls_of(transport)[0], [await listener.next_frame() for _ in range(2)]
    async with wss_connect(port, SOCKETIO_PATH, context) as (transport, listener):
        kind, packet = await listener.next_frame()
        assert kind is T and packet.startswith(b"0{"), packet  # Engine.IO open
        transport.send(T, b"40")
        kind, packet = await listener.next_frame()
        assert kind is T and packet.startswith(b"40{"), packet  # Socket.IO connect
        transport.send(T, SOCKETIO_ECHO)
        return tls_of(transport)[0], [await listener.next_frame()]


def expected_echo(name: str) -> list[Frame]:
    if SERVERS[name].protocol == "raw":
        return [(T, "héllo ✓".encode()), (B, BINARY_PAYLOAD)]
    return [(T, SOCKETIO_ECHO)]


# --- Serving wss:// --------------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_echo_over_wss_byte_for_byte_with_tls_1_3(
    name: str, tier: str, certificates: Certificates, record_property: Callable[[str, str], None]
) -> None:
    context = client_context(certificates.ca, insecure=False)
    with running(name, "--tier", tier, *tls_flags(certificates)) as port:
        version, replies = asyncio.run(echo_over_wss(name, port, context))
    record_property("tls_version", version)
    assert version == "TLSv1.3"
    assert replies == expected_echo(name)


def test_a_client_that_does_not_trust_the_ca_is_refused(
    name: str, certificates: Certificates, tmp_path: Path
) -> None:
    """The handshake fails on the client's verification, and the server goes on serving."""
    (tmp_path / "other").mkdir()
    stranger = client_context(make_certificates(tmp_path / "other").ca, insecure=False)
    path = "/" if SERVERS[name].protocol == "raw" else SOCKETIO_PATH

    async def scenario(port: int) -> tuple[str, list[Frame]]:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with wss_connect(port, path, stranger):
                pass
        return await echo_over_wss(name, port, client_context(certificates.ca))

    with running(name, *tls_flags(certificates)) as port:
        assert asyncio.run(scenario(port)) == ("TLSv1.3", expected_echo(name))


def test_socketio_servers_answer_an_https_polling_handshake_in_the_shipped_tier(
    socketio_name: str, certificates: Certificates
) -> None:
    context = client_context(certificates.ca, insecure=False)

    async def scenario(port: int) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"https://127.0.0.1:{port}{POLLING_PATH}", ssl=context) as response,
        ):
            return response.status, await response.text()

    with running(socketio_name, "--tier", "shipped", *tls_flags(certificates)) as port:
        status, body = asyncio.run(scenario(port))
    assert status == 200 and body.startswith("0{"), (status, body)
    assert json.loads(body[1:])["upgrades"] == ["websocket"]


def test_tls_with_two_processes_sharing_a_port(
    scaling_name: str, certificates: Certificates
) -> None:
    """TLS together with the scale-out options, as the harness starts them (--reuse-port, or a
    listening socket handed over with --listen-fd): every connection to the shared port, on
    whichever process, is TLS 1.3 and echoes."""
    context = client_context(certificates.ca, insecure=False)

    async def scenario(port: int) -> list[tuple[str, list[Frame]]]:
        return [
            await echo_over_wss(scaling_name, port, context) for _ in range(SHARED_PORT_CONNECTIONS)
        ]

    with ExitStack() as stack:
        port = stack.enter_context(running(scaling_name, *tls_flags(certificates), shared=True))
        stack.enter_context(running(scaling_name, *tls_flags(certificates), port=port, shared=True))
        results = asyncio.run(scenario(port))
    assert results == [("TLSv1.3", expected_echo(scaling_name))] * SHARED_PORT_CONNECTIONS


def test_plain_ws_is_not_served_on_a_tls_port(name: str, certificates: Certificates) -> None:
    """No silent fallback: a plain ws:// upgrade request gets no 101 from a TLS server (it reads
    the request as a broken TLS handshake and closes the connection)."""
    path = "/" if SERVERS[name].protocol == "raw" else SOCKETIO_PATH
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()

    async def scenario(port: int) -> bytes:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), NETWORK_TIMEOUT_S
        )
        try:
            writer.write(request)
            return await asyncio.wait_for(reader.read(), NETWORK_TIMEOUT_S)
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    with running(name, *tls_flags(certificates)) as port:
        answer = asyncio.run(scenario(port))
    assert not answer.startswith(b"HTTP/1.1 101"), answer


# --- Bad flags -------------------------------------------------------------------------------


def refused(name: str, *flags: str) -> list[str]:
    """Start ``name`` with ``flags``, which it must refuse: exit 2, nothing on stdout; its
    stderr lines."""
    result = subprocess.run(
        server_args(name, "--port", "0", *flags), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=READY_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # no READY
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_one_tls_flag_without_the_other_is_a_usage_error(
    name: str, given: str, certificates: Certificates
) -> None:
    lines = refused(name, given, str(certificates.cert))
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert "--tls-cert and --tls-key: give both or neither" in errors[0]


@pytest.mark.parametrize("missing", ["--tls-cert", "--tls-key"])
def test_an_unreadable_file_is_one_line(
    name: str, missing: str, certificates: Certificates, tmp_path: Path
) -> None:
    absent = tmp_path / "absent.pem"
    files = {"--tls-cert": str(certificates.cert), "--tls-key": str(certificates.key)}
    files[missing] = str(absent)
    lines = refused(name, *(part for flag, path in files.items() for part in (flag, path)))
    (line,) = lines
    assert line.lower() == f"error: {missing}: cannot read {absent}: no such file or directory"


def test_files_that_are_no_certificate_and_key_are_one_line(name: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    (line,) = refused(name, "--tls-cert", str(garbage), "--tls-key", str(garbage))
    assert line.startswith(
        f"error: --tls-cert/--tls-key: {garbage} and {garbage} are not a PEM certificate chain "
        "and its key ("
    ), line
