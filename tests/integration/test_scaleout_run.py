"""Issue 18, the harness's side: ``wsbench run --scenario scaleout`` end to end (several server
processes on one port, a redis-server the harness starts and stops, fan-out rows split local
and remote per process, echo at one process beside two), and against a Redis the user runs."""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT, TIME_FACTOR
from tests.integration.test_scaleout_servers import broker_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 300.0 * TIME_FACTOR
SERVERS = "websockets,socketio-aiohttp"


def run(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bench", "run", "--scenario", "scaleout", "--servers", SERVERS,
            "--duration", "1", "--warmup", "0.3", "--out", str(out), *options]  # fmt: skip
    return subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "runs.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def per_worker(text: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (pair.split(":") for pair in text.split())}


def redis_servers_under(folder: Path) -> list[psutil.Process]:
    """redis-server processes logging into ``folder`` (the harness's own, per cell)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "redis-server" in (process.info["name"] or "") and str(folder) in " ".join(cmdline):
            found.append(process)
    return found


def check_fanout_rows(found: list[dict[str, str]]) -> None:
    fanout = [r for r in found if r["mode"] == "fanout"]
    assert {r["server"] for r in fanout} == set(SERVERS.split(","))
    for row in fanout:
        assert (row["status"], row["errors"]) == ("ok", "0"), row["failure"]
        assert (row["server_workers"], row["broker"]) == ("2", "redis")
        receivers = per_worker(row["receivers_per_worker"])
        assert set(receivers) == {0, 1} and sum(receivers.values()) == 1000
        assert per_worker(row["missing_per_worker"]) == {0: 0, 1: 0}
        assert per_worker(row["duplicated_per_worker"]) == {0: 0, 1: 0}
        delivered = per_worker(row["delivered_per_worker"])
        assert sum(delivered.values()) == int(row["delivered"]) > 0
        assert row["publisher_worker"] in ("0", "1")
        for column in ("fanout_local_p50_us", "fanout_local_p99_us", "fanout_remote_p50_us",
                       "fanout_remote_p99_us"):  # fmt: skip
            assert float(row[column]) > 0, column


def test_the_scaleout_scenario_runs_every_fanout_row_on_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(out)
    assert result.returncode == 0, result.stdout + result.stderr
    found = rows(out)
    check_fanout_rows(found)
    echo = {(r["server"], r["server_workers"]) for r in found if r["mode"] == "closed"}
    assert echo == {(s, n) for s in SERVERS.split(",") for n in ("1", "2")}
    for row in found:
        assert (row["status"], row["errors"]) == ("ok", "0"), row["failure"]
        cpu = row["server_cpu_pct_per_worker"]
        if row["server_workers"] == "2":
            # Both processes sampled; the row's CPU is their sum (each rounded to 0.1%).
            shares = [float(v) for v in re.findall(r"\d:([\d.]+)", cpu)]
            assert len(shares) == 2
            assert float(row["server_cpu_pct"]) == pytest.approx(sum(shares), abs=0.2)
        else:
            assert cpu == ""
    # Every redis-server the harness started is gone.
    assert redis_servers_under(out) == []


def publishes(url: str) -> int:
    """PUBLISH commands the Redis at ``url`` has processed (INFO commandstats)."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5.0) as conn:
        conn.sendall(b"INFO commandstats\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n") and len(data) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    found = re.search(rb"cmdstat_publish:calls=(\d+)", data)
    return int(found.group(1)) if found else 0


def test_a_redis_the_user_runs_carries_the_cross_process_deliveries(
    tmp_path: Path,
    broker_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    before = publishes(broker_url)
    out = tmp_path / "out"
    result = run(out, "--redis-url", broker_url)
    assert result.returncode == 0, result.stdout + result.stderr
    found = rows(out)
    check_fanout_rows(found)
    # The harness started no Redis of its own, and every cross-process delivery went through
    # this one: each published fan-out message is one PUBLISH there (plus python-socketio's).
    assert redis_servers_under(out) == []
    published = sum(int(r["sent"]) for r in found if r["mode"] == "fanout")
    assert publishes(broker_url) - before >= published > 0


def test_a_broker_fault_reports_losses_and_recovery_for_every_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The scenario's own 6 s: after a 1-s outage a quarter in, the raw servers' relay
    # subscribes again 3 s after the kill (1 s, then 2 s, as python-socketio's listener).
    argv = [sys.executable, "-m", "bench", "run", "--scenario", "broker-fault", "--servers",
            SERVERS, "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = rows(out)
    assert {r["server"] for r in found} == set(SERVERS.split(","))
    for row in found:
        assert (row["status"], row["errors"], row["broker_fault"]) == ("ok", "0", "True")
        assert float(row["broker_down_s"]) >= 1.0
        # Broadcasts were lost while the broker was gone, and the deliveries they cost are
        # those counted missing: receivers on the other process, message by message.
        lost = int(float(row["lost_broadcasts"]))
        assert lost > 0
        receivers = per_worker(row["receivers_per_worker"])
        remote = sum(n for w, n in receivers.items() if str(w) != row["publisher_worker"])
        assert int(row["missing"]) <= lost * remote
        # Both processes got whole broadcasts again: the slowest recovery is the row's.
        assert row["broker_fault_note"] == "", row["broker_fault_note"]
        recovery = {int(w): float(t) for w, t in
                    (pair.split(":") for pair in row["recovery_per_worker"].split())}  # fmt: skip
        assert set(recovery) == {0, 1}
        assert float(row["broker_recovery_s"]) == pytest.approx(max(recovery.values()), abs=1e-3)
    assert redis_servers_under(out) == []


def test_the_harnesss_redis_starts_with_a_relative_results_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make bench writes under results/runs/, a relative path; redis-server runs in the cell's
    # log folder, so a relative --logfile made every one exit at start (a fresh clone's run).
    import asyncio
    import os
    import shutil

    from bench.redis_broker import RedisServer, ping

    if shutil.which("redis-server") is None:
        message = "redis-server not installed (apt-get install redis-server)"
        if os.environ.get("WSBENCH_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.chdir(tmp_path)
    server = RedisServer(Path("results/runs/x/logs/001-cell/redis.log"))

    async def start_ping_stop() -> str:
        try:
            await server.start()
            return await ping(server.url)
        finally:
            await server.stop()

    assert asyncio.run(start_ping_stop())  # its version: it answered
    assert (tmp_path / "results/runs/x/logs/001-cell/redis.log").stat().st_size > 0
    assert server.process is not None and server.process.returncode is not None
