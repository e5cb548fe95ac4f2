"""Issue 20, pure parts: what the shipped tier and TLS change in a cell's plans and server
arguments, and the one-line refusals of combinations not measured (yet)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.runner import setup_path, tier_arguments, with_run_certificates, worker_plans
from bench.spec import POLLING_UPGRADE, SHIPPED, RunSpec
from bench.tls import Certificates

CELL = RunSpec(
    scenario="adhoc", server="socketio-aiohttp", protocol="socketio", loop="uvloop",
    mode="closed", connections=4, payload_bytes=512, payload_kind="json", warmup_s=0.3,
    duration_s=1.0,
)  # fmt: skip
URL = "ws://127.0.0.1:1/socket.io/?EIO=4&transport=websocket"
WS_TARGET = ["--target", "ws://127.0.0.1:9/", "--protocol", "raw"]
WSS_TARGET = ["--target", "wss://127.0.0.1:9/", "--protocol", "raw"]


def test_shipped_socketio_echo_opens_over_long_polling_and_offers_deflate() -> None:
    (plan,) = worker_plans(replace(CELL, tier=SHIPPED), URL)
    assert plan.transport == POLLING_UPGRADE and plan.deflate
    (plan,) = worker_plans(CELL, URL)
    assert plan.transport == "websocket" and not plan.deflate


def test_shipped_raw_and_memory_cells_keep_the_websocket_path() -> None:
    raw = replace(CELL, server="websockets", protocol="raw", tier=SHIPPED)
    assert setup_path(raw) == "websocket"
    memory = replace(CELL, mode="memory", tier=SHIPPED, memory_steps=(10, 20), connections=20)
    assert setup_path(memory) == "websocket"
    assert worker_plans(memory, URL)[0].deflate


def test_server_arguments_name_the_tier_and_the_certificates() -> None:
    assert tier_arguments(CELL, None) == []
    certificates = Certificates(Path("ca.pem"), Path("chain.pem"), Path("key.pem"))
    assert tier_arguments(replace(CELL, tier=SHIPPED, tls=True), certificates) == [
        "--tier", "shipped", "--tls-cert", "chain.pem", "--tls-key", "key.pem",
    ]  # fmt: skip


def test_a_tls_cell_trusts_the_ca_made_in_its_own_log_folder() -> None:
    spec = with_run_certificates(replace(CELL, tls=True), Path("/run/logs/001"))
    assert spec.tls_ca == "/run/logs/001/tls/ca.pem"
    (plan,) = worker_plans(spec, URL.replace("ws://", "wss://"))
    assert plan.tls_ca == spec.tls_ca and not plan.tls_insecure
    assert with_run_certificates(CELL, Path("/x")) is CELL


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("accepted: wsbench would have started a run")

    monkeypatch.setattr(cli, "output_folder", refuse)
    monkeypatch.setattr(cli, "_run_with_signals", refuse)
    yield


@pytest.mark.usefixtures("nothing_starts")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tier", "shipped", "--mode", "connect"], "--tier shipped measures closed, open"),
        (["--tier", "retail"], "invalid choice"),
        (["--tls", "--mode", "memory"], "--tls measures closed, open, connect cells so far"),
        (
            ["--tls", "--transport", "polling", "--servers", "socketio-asgi"],
            "--tls runs over WebSocket only so far",
        ),
        (["--tls", "--tier", "shipped", "--servers", "socketio-asgi"], "WebSocket only so far"),
        (
            ["--tls", *WS_TARGET],
            "runs as its owner configured it",
        ),
        (
            ["--tier", "shipped", *WS_TARGET],
            "runs as its owner",
        ),
        (["--ca", "x.pem"], "go with a wss:// or https:// --target"),
        (
            ["--insecure", *WS_TARGET],
            "go with a wss:// or https://",
        ),
        (
            ["--ca", "/no/such.pem", *WSS_TARGET],
            "no such file",
        ),
    ],
)
def test_tier_and_tls_refusals_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["run", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("wsbench: error: ") and message in line, line


@pytest.mark.usefixtures("nothing_starts")
def test_ca_and_insecure_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read")
    argv = ["run", "--target", "wss://127.0.0.1:9/", "--protocol", "raw", "--ca", str(ca),
            "--insecure"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "pick one" in capsys.readouterr().err
