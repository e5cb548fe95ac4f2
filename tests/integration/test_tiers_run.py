"""Issue 20 through ``wsbench run``: the shipped tier (each library's defaults, a browser-like
client that offers permessage-deflate and speaks it, Socket.IO over long-polling first) beside
the equalised one, and TLS on the harness's servers and on a --target. Real servers on
loopback; every process is stopped whatever happens."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import EXIT_RUN_FAILED
from bench.tls import Certificates, make_certificates
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, read_ready_port, stop_process
from tests.node import require_node

pytestmark = pytest.mark.integration

PYTHON_SERVERS = ["websockets", "aiohttp", "socketio-aiohttp", "socketio-asgi"]
NODE_SERVERS = ["node-ws", "node-socketio"]
SHORT = ["--connections", "4", "--duration", "1", "--warmup", "0.3"]


def rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "runs.csv").open() as stream:
        return {row["server"]: row for row in csv.DictReader(stream)}


def run(out: Path, *argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["run", *argv, "--out", str(out)])
    return code, rows(out)


def assert_clean(row: dict[str, str]) -> None:
    assert row["status"] == "ok", row["failure"]
    assert row["errors"] == "0" and row["missing"] == "0" and row["unexpected"] == "0"
    assert int(row["received"]) > 0


def test_shipped_json_negotiates_deflate_where_the_library_accepts_it_and_saves_wire_bytes(
    tmp_path: Path,
) -> None:
    require_node()
    servers = ",".join(PYTHON_SERVERS + NODE_SERVERS)
    cell = ["--servers", servers, "--mode", "closed", "--payload-kind", "json",
            "--payload", "512", *SHORT]  # fmt: skip
    code, equalised = run(tmp_path / "equalised", *cell)
    assert code == 0
    code, shipped = run(tmp_path / "shipped", *cell, "--tier", "shipped")
    assert code == 0
    for name in PYTHON_SERVERS + NODE_SERVERS:
        assert_clean(equalised[name])
        assert_clean(shipped[name])
        assert equalised[name]["tier"] == "equalised" and shipped[name]["tier"] == "shipped"
        assert equalised[name]["extensions_measured"] == ""
    for name in PYTHON_SERVERS:
        # websockets, aiohttp and uvicorn accept a browser's offer; the rows say what was
        # agreed, and compression shrinks both directions.
        assert shipped[name]["extensions_measured"].startswith("permessage-deflate"), name
        assert shipped[name]["extensions_negotiated"].startswith("permessage-deflate"), name
        for direction in ("up", "down"):
            column = f"wire_bytes_{direction}_per_msg"
            assert float(shipped[name][column]) < float(equalised[name][column]) / 2, name
    for name in NODE_SERVERS:
        # Node's socket.io and ws servers ship with permessage-deflate off.
        assert shipped[name]["extensions_measured"] == ""
        assert float(shipped[name]["wire_bytes_up_per_msg"]) == float(
            equalised[name]["wire_bytes_up_per_msg"]
        )


def test_shipped_open_loop_socketio_opens_over_long_polling_and_upgrades(tmp_path: Path) -> None:
    code, shipped = run(
        tmp_path / "out", "--servers", "socketio-aiohttp", "--tier", "shipped", "--mode", "open",
        "--rate", "200", "--payload-kind", "json", "--payload", "200", *SHORT,
    )  # fmt: skip
    assert code == 0
    row = shipped["socketio-aiohttp"]
    assert_clean(row)
    assert row["extensions_measured"] == "permessage-deflate"
    # Its workers' plans took the long-polling path (tests/unit/test_tiers.py checks the
    # plans); a session that did not open over polling would have failed its set-up.


def test_tls_on_every_server_records_the_version_and_cipher(tmp_path: Path) -> None:
    code, measured = run(
        tmp_path / "out", "--tls", "--servers", "websockets,socketio-aiohttp", "--mode",
        "closed", *SHORT,
    )  # fmt: skip
    assert code == 0
    for name in ("websockets", "socketio-aiohttp"):
        row = measured[name]
        assert_clean(row)
        assert row["tls"] == "True"
        assert row["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert row["tls_cipher"]
    # The run's certificates stay in its own folder.
    assert sorted(p.name for p in (tmp_path / "out").glob("logs/*/tls/*.pem"))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Certificates]]:
    """The websockets server over TLS, started by hand: a --target someone else runs."""
    folder = tmp_path / "certs"
    folder.mkdir()
    certificates = make_certificates(folder)
    process = subprocess.Popen(
        [".venv/bin/python", "-m", "servers.websockets", "--port", "0",
         "--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield read_ready_port(process, READY_TIMEOUT_S), certificates
    finally:
        stop_process(process)


def test_a_wss_target_is_measured_with_its_ca_or_insecure_and_refused_unverified(
    tls_server: tuple[int, Certificates], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, certificates = tls_server
    target = ["--target", f"wss://127.0.0.1:{port}/", "--protocol", "raw", "--mode", "closed",
              *SHORT]  # fmt: skip
    code, measured = run(tmp_path / "ca", *target, "--ca", str(certificates.ca))
    assert code == 0
    (row,) = measured.values()
    assert_clean(row)
    assert row["tls"] == "True" and row["tls_version"] == "TLSv1.3"
    code, measured = run(tmp_path / "insecure", *target, "--insecure")
    assert code == 0
    assert_clean(next(iter(measured.values())))
    capsys.readouterr()
    # Without the CA, the system's store does not know the run's certificate: the row fails
    # in one line naming the verification.
    code, measured = run(tmp_path / "unverified", *target)
    assert code == EXIT_RUN_FAILED
    (row,) = measured.values()
    assert row["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in row["failure"] and "\n" not in row["failure"]
