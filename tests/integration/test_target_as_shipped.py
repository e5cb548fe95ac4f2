"""``wsbench run --target`` against servers in their libraries' default configurations.

Those servers accept permessage-deflate (and python-socketio's also allow long-polling and
ping): the probe must record what they would negotiate, the measuring connections must offer
nothing, and the run must go on with every echo verified. A server that cannot be measured
gets one line saying what it refused.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from bench.cli import main
from bench.errors import EXIT_RUN_FAILED
from bench.metrics import fairness
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, read_ready_port, stop_process

pytestmark = pytest.mark.integration

PROTOCOLS = {
    "websockets": "raw",
    "aiohttp": "raw",
    "socketio-aiohttp": "socketio",
    "socketio-asgi": "socketio",
}


@pytest.fixture
def shipped_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    """A server of ``tests.integration.shipped_server`` (its kind is the parameter): its port
    and pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.shipped_server", request.param, "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        yield read_ready_port(process, READY_TIMEOUT_S), process.pid
    finally:
        stop_process(process)


def read_row(out: Path) -> dict[str, str]:
    with (out / "runs.csv").open() as stream:
        (row,) = csv.DictReader(stream)
    return row


@pytest.mark.parametrize("shipped_server", list(PROTOCOLS), indirect=True)
def test_target_in_default_configuration_is_measured_with_what_the_probe_saw(
    shipped_server: tuple[int, int], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    port, pid = shipped_server
    kind = request.node.callspec.params["shipped_server"]
    out = tmp_path / "out"
    code = main(
        ["run", "--target", f"http://127.0.0.1:{port}", "--protocol", PROTOCOLS[kind],
         "--server-pid", str(pid), "--mode", "closed", "--connections", "10",
         "--duration", "3", "--warmup", "1", "--out", str(out)]
    )  # fmt: skip
    row = read_row(out)
    assert code == 0, row["failure"]
    assert row["status"] == "ok"
    assert row["errors"] == "0" and row["missing"] == "0" and row["unexpected"] == "0"
    assert int(row["received"]) > 0
    # Every one of these libraries accepts deflate when a browser offers it...
    assert row["extensions_offered_by_probe"] == fairness.DEFLATE_OFFER
    assert row["extensions_negotiated"].startswith("permessage-deflate")
    # ...and the measuring connections offered nothing, so the bytes on the wire per message
    # are the uncompressed frame: 32-byte payload, 6-byte masked client header (+ Socket.IO's
    # framing of 13 bytes, the same as the harness's own Socket.IO servers).
    framing = 13 if PROTOCOLS[kind] == "socketio" else 0
    assert float(row["wire_bytes_up_per_msg"]) == pytest.approx(38 + framing)


def test_managed_servers_offered_deflate_negotiate_none(tmp_path: Path) -> None:
    """The contract: the harness's own servers decline what the probe offers."""
    out = tmp_path / "out"
    code = main(
        ["run", "--servers", "aiohttp,socketio-asgi", "--mode", "closed", "--connections", "2",
         "--duration", "1", "--warmup", "0.5", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    with (out / "runs.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {row["server"] for row in rows} == {"aiohttp", "socketio-asgi"}
    for row in rows:
        assert row["extensions_offered_by_probe"] == fairness.DEFLATE_OFFER
        assert row["extensions_negotiated"] == ""


async def _http_only_server() -> tuple[web.AppRunner, int]:
    """Answers every GET with a plain page: no WebSocket anywhere."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="not a WebSocket server", status=403)

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def test_a_server_that_refuses_the_handshake_gets_one_line_naming_what_it_refused() -> None:
    async def scenario() -> str:
        runner, port = await _http_only_server()
        try:
            with pytest.raises(fairness.ProbeRefused) as caught:
                await fairness.probe(f"ws://127.0.0.1:{port}/", "raw", timeout_s=5.0)
        finally:
            await runner.cleanup()
        return str(caught.value)

    message = asyncio.run(scenario())
    assert "\n" not in message
    assert "refused a WebSocket handshake" in message
    assert "403" in message


@pytest.mark.parametrize("shipped_server", ["websockets"], indirect=True)
def test_a_raw_server_taken_for_socketio_fails_its_row_in_one_line(
    shipped_server: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = shipped_server
    out = tmp_path / "out"
    code = main(
        ["run", "--target", f"ws://127.0.0.1:{port}/", "--protocol", "socketio",
         "--mode", "closed", "--connections", "2", "--duration", "1", "--warmup", "0",
         "--out", str(out)]
    )  # fmt: skip
    assert code == EXIT_RUN_FAILED
    failure = read_row(out)["failure"]
    assert "\n" not in failure
    assert "not a Socket.IO server?" in failure or "Engine.IO open packet" in failure
