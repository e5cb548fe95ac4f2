"""Adding a server is one record in bench/catalog.py plus its server file: a throwaway record
(a second aiohttp under another name, and a copy of a Socket.IO server that pairs with it)
works with every command, with nothing else changed."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import catalog
from bench.catalog import SERVERS, ServerInfo, raw_counterpart, select
from bench.cli import main
from bench.scenarios import expand, load_suite

pytestmark = pytest.mark.integration

THROWAWAY_RAW = ServerInfo(
    "twin-raw", "raw", "a throwaway record: aiohttp under another name", "twin",
    ("{python}", "-m", "servers.aiohttp"), packages=("aiohttp",), colour="#17becf",
)  # fmt: skip
THROWAWAY_SIO = ServerInfo(
    "twin-socketio", "socketio", "a throwaway record: python-socketio on aiohttp", "twin",
    ("{python}", "-m", "servers.socketio_aiohttp"), packages=("python-socketio",),
    colour="#bcbd22",
)  # fmt: skip


@pytest.fixture
def throwaway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(SERVERS, THROWAWAY_RAW.name, THROWAWAY_RAW)
    monkeypatch.setitem(SERVERS, THROWAWAY_SIO.name, THROWAWAY_SIO)
    yield


def test_suites_and_pairs_pick_up_a_new_record(throwaway: None) -> None:
    assert raw_counterpart("twin-socketio") == "twin-raw"
    assert {"twin-raw", "twin-socketio"} <= set(select("all", "echo"))
    cells = expand(load_suite("default").entries, 1)
    assert {c.server for c in cells} >= {"twin-raw", "twin-socketio"}
    assert "twin-raw" in catalog.raw_servers()


def test_every_command_works_with_the_new_records(throwaway: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["run", "--servers", "twin-raw,twin-socketio,aiohttp", "--mode", "closed",
            "--connections", "2", "--duration", "1", "--warmup", "0.5", "--repeat", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    with (out / "runs.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {r["server"] for r in rows} == {"twin-raw", "twin-socketio", "aiohttp"}
    assert all(r["status"] == "ok" and r["errors"] == "0" for r in rows)
    with (out / "summary.csv").open() as stream:
        summary = {r["server"]: r for r in csv.DictReader(stream)}
    assert float(summary["twin-socketio"]["throughput_ratio_vs_twin-raw_median"]) > 0
    report = (out / "report.html").read_text()
    assert "twin-socketio/twin-raw" in report and THROWAWAY_SIO.colour in report
    assert main(["report", str(out)]) == 0
    assert main(["report", str(out), "--markdown"]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    assert main(["check", str(out), "--baseline", str(out)]) == 0
    for mode_argv in (
        ["--mode", "open", "--rate", "200", "--duration", "1"],
        ["--mode", "connect", "--connections", "20", "--duration", "5"],
        ["--mode", "memory", "--memory-steps", "0,10,20", "--duration", "0.3", "--warmup", "0.3"],
        ["--mode", "fanout", "--connections", "5", "--rate", "50", "--duration", "1"],
    ):
        more = tmp_path / mode_argv[1]
        code = main(["run", "--servers", "twin-raw,twin-socketio", *mode_argv, "--warmup", "0.3",
                     "--out", str(more)])  # fmt: skip
        assert code == 0, mode_argv
