"""The generator against real processes: accounting with a faulty server, and every server
end to end through ``wsbench run``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import runner
from bench.catalog import SERVERS
from bench.cli import main
from bench.metrics.sampling import WindowUsage
from bench.protocol.exchange import Exchange
from tests.conftest import ServerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIME_FACTOR = float(os.environ.get("WSBENCH_TIME_FACTOR", "1"))


def read_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "runs.csv").open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def faulty_server(request: pytest.FixtureRequest) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.faulty_server", "--fault", request.param],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY "), line
        yield int(line.split()[1])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5 * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# 1000 messages at 1000/s over 10 connections: 100 per connection, seq 0..99, 10 victims each.
FAULT_RUN = ["--mode", "open", "--rate", "1000", "--connections", "10", "--duration", "1",
             "--warmup", "0"]  # fmt: skip


@pytest.mark.parametrize(
    ("faulty_server", "missing", "unexpected", "received"),
    [("drop", 100, 0, 900), ("duplicate", 0, 100, 1000), ("corrupt", 100, 100, 900)],
    indirect=["faulty_server"],
)
def test_every_wrong_missing_or_duplicated_echo_is_an_error(
    faulty_server: int, missing: int, unexpected: int, received: int, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = main(["run", "--target", f"ws://127.0.0.1:{faulty_server}/", "--protocol", "raw",
                 *FAULT_RUN, "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 3  # a run with errors fails the command
    assert int(row["sent"]) == 1000
    assert int(row["received"]) == received
    assert int(row["missing"]) == missing
    assert int(row["unexpected"]) == unexpected
    assert int(row["errors"]) == missing + unexpected


@pytest.mark.parametrize(
    ("faulty_server", "missing", "duplicated", "unexpected"),
    [("drop", 50, 0, 0), ("duplicate", 0, 50, 0), ("corrupt", 50, 0, 50)],
    indirect=["faulty_server"],
)
def test_fanout_accounts_for_every_delivery_to_every_receiver(
    faulty_server: int, missing: int, duplicated: int, unexpected: int, tmp_path: Path
) -> None:
    # 100 messages (seq 0..99, 10 victims) broadcast to 5 receivers: 500 deliveries expected.
    out = tmp_path / "out"
    code = main(["run", "--target", f"ws://127.0.0.1:{faulty_server}/", "--protocol", "raw",
                 "--mode", "fanout", "--rate", "100", "--connections", "5", "--duration", "1",
                 "--warmup", "0", "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 3
    assert (int(row["sent"]), int(row["recipients"])) == (100, 5)
    assert int(row["delivered"]) == int(row["received"]) == 500 - missing
    assert int(row["missing"]) == missing
    assert int(row["duplicated"]) == duplicated
    assert int(row["unexpected"]) == unexpected
    assert int(row["errors"]) == missing + duplicated + unexpected


def test_fanout_on_every_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--mode", "fanout", "--rate", "40", "--connections", "25",
                 "--duration", "1", "--warmup", "0.3", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {r["server"] for r in rows} == set(SERVERS)  # every server of the registry
    for row in rows:
        assert (row["scenario"], row["mode"]) == ("fanout", "fanout")
        assert int(row["recipients"]) == 25 and int(row["sent"]) == 40
        # Every published message reached every receiver exactly once.
        assert int(row["delivered"]) == 40 * 25 and int(row["errors"]) == 0
        assert int(row["duplicated"]) == 0 and int(row["missing"]) == 0
        first, last = float(row["fanout_first_p99_us"]), float(row["fanout_last_p99_us"])
        assert 0 < first <= last
        assert 0 < float(row["fanout_p50_us"]) <= float(row["fanout_p99_us"])


def test_every_server_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--duration", "1", "--warmup", "0.5", "--loops", "uvloop,asyncio",
                 "--servers", "websockets,aiohttp,socketio-aiohttp,socketio-asgi",
                 "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {(r["server"], r["loop"]) for r in rows} == {
        (s, loop) for s in ("websockets", "aiohttp", "socketio-aiohttp", "socketio-asgi")
        for loop in ("uvloop", "asyncio")
    }  # fmt: skip
    for row in rows:
        assert row["status"] == "ok"
        assert int(row["errors"]) == 0
        assert int(row["sent"]) == int(row["received"]) > 0
        assert float(row["p50_us"]) <= float(row["p99_us"]) <= float(row["max_us"])
        assert float(row["server_cpu_pct"]) > 0 and int(row["server_rss_bytes"]) > 0
        assert row["extensions_negotiated"] == ""
        assert float(row["server_loop_lag_p99_ms"]) >= 0  # the server reported its loop lag
        assert float(row["generator_headroom"]) > 0  # the suite calibrated the generator
        assert float(row["slice_s"]) > 0  # each loop's four servers ran together, in turn
    meta = json.loads((out / "meta.json").read_text())
    if meta["pinning"]["pinned"]:  # steal is read for the pinned CPUs
        assert all(float(row["server_cpus_steal_pct"]) >= 0 for row in rows)
        assert all(float(row["generator_cpus_steal_pct"]) >= 0 for row in rows)
    assert meta["status"] == "complete"
    assert meta["fairness"]["compression"] == "off"
    assert set(meta["fairness_probes"]) == {
        "websockets",
        "aiohttp",
        "socketio-aiohttp",
        "socketio-asgi",
    }
    report = (out / "report.html").read_text()
    assert "socketio-asgi" in report and "<script src" not in report
    # `wsbench report` on a copy (another folder name) rebuilds the very same page.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").read_text() == report


def record_server_windows(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float, float]]:
    """Server name -> (its CPU % over its window, the window in s), as the time-sliced runner
    reads them from its sampler, before it scales the CPU to the server's own slices."""
    windows: dict[str, tuple[float, float]] = {}
    names: list[str] = []
    measure_sliced = runner.measure_sliced

    async def named_measure_sliced(slots: list[Any], pinning: Any) -> None:
        names[:] = [slot.spec.server for slot in slots]  # "server-<index>" is slots[index]
        await measure_sliced(slots, pinning)

    class WindowSampler(runner.ProcessSampler):
        def usage(self, role: str, start_ns: int, end_ns: int) -> WindowUsage:
            usage = super().usage(role, start_ns, end_ns)
            if role.startswith("server-"):
                name = names[int(role.removeprefix("server-"))]
                windows[name] = (usage.cpu_pct, (end_ns - start_ns) / 1e9)
            return usage

    monkeypatch.setattr(runner, "measure_sliced", named_measure_sliced)
    monkeypatch.setattr(runner, "ProcessSampler", WindowSampler)
    return windows


def test_time_sliced_throughput_counts_only_the_servers_own_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # websockets alone, then in turn with two others, each loaded for 2 s of 0.2-s slices.
    solo, sliced = tmp_path / "solo", tmp_path / "sliced"
    common = ["--duration", "2", "--warmup", "0.5", "--mode", "closed"]
    assert main(["run", "--servers", "websockets", *common, "--out", str(solo)]) == 0
    windows = record_server_windows(monkeypatch)
    code = main(["run", "--servers", "websockets,aiohttp,socketio-aiohttp", "--slice", "0.2",
                 *common, "--out", str(sliced)])  # fmt: skip
    rows = {row["server"]: row for row in read_rows(sliced)}
    assert code == 0, [r["failure"] for r in rows.values()]
    (alone,) = read_rows(solo)
    assert alone["slice_s"] == "0.0" and rows["websockets"]["slice_s"] == "0.2"
    for row in rows.values():
        assert int(row["errors"]) == 0 and int(row["sent"]) == int(row["received"]) > 0
    together = rows["websockets"]
    # Throughput is over the server's own slices: received / msgs/s gives back duration_s
    # (2 s), where a whole-run divisor would give the three servers' 6 s.
    for row in (alone, together):
        active_s = int(row["received"]) / float(row["throughput_msgs_s"])
        assert active_s == pytest.approx(float(row["duration_s"]), rel=0.01), row
    # CPU too is over the server's own slices (it idles in the others'): messages per server
    # CPU-second are the messages it echoed over the CPU-seconds it spent in its window, the
    # span from its first measured slice to its last, which holds the others' slices too. A
    # whole-window CPU divisor would make the figure window / duration (about 2.8) times that.
    # Both sides come from the same samples of this run, so a host that slows the server or
    # takes part of its core moves them together; comparing with the solo run's figure would
    # not be (the hypervisor took 53% of the core in one CI run and 4% in the next).
    assert set(windows) == set(rows)
    for name, row in rows.items():
        window_cpu_pct, window_s = windows[name]
        cpu_s = window_cpu_pct / 100 * window_s
        assert float(row["msgs_per_cpu_s"]) == pytest.approx(
            int(row["received"]) / cpu_s, rel=0.02
        ), (name, row["msgs_per_cpu_s"], row["server_cpu_pct"], windows[name])


def websocket_frame_bytes(payload: bytes, masked: bool) -> int:
    """RFC 6455 framing by hand: 2 header bytes, 2 or 8 more for longer payloads, and the
    4-byte mask on frames a client sends."""
    extended = 0 if len(payload) <= 125 else 2 if len(payload) <= 0xFFFF else 8
    return 2 + extended + (4 if masked else 0) + len(payload)


def expected_wire(protocol: str, kind: str, payload_bytes: int) -> tuple[int, int, int]:
    """Bytes up, bytes down and frames each way per message, from the encoded packets."""
    exchange = Exchange(protocol, kind, payload_bytes)  # type: ignore[arg-type]
    preamble, body, reply = exchange.frames(7, 123)
    reply_preamble = exchange.expected_reply_preamble(7)
    up = websocket_frame_bytes(body, masked=True)
    down = websocket_frame_bytes(reply, masked=False)
    if preamble is not None:
        up += websocket_frame_bytes(preamble, masked=True)
    if reply_preamble is not None:
        down += websocket_frame_bytes(reply_preamble, masked=False)
    return up, down, exchange.frames_per_message


@pytest.mark.parametrize(("kind", "payload_bytes"), [("text", 32), ("binary", 200)])
def test_wire_bytes_are_counted_and_match_hand_computed_frames(
    kind: str, payload_bytes: int, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = main(["run", "--servers", "websockets,socketio-aiohttp", "--payload-kind", kind,
                 "--payload", str(payload_bytes), "--duration", "0.5", "--warmup", "0.2",
                 "--out", str(out)])  # fmt: skip
    rows = {row["server"]: row for row in read_rows(out)}
    assert code == 0, [r["failure"] for r in rows.values()]
    for server, protocol in (("websockets", "raw"), ("socketio-aiohttp", "socketio")):
        up, down, frames = expected_wire(protocol, kind, payload_bytes)
        row = rows[server]
        assert float(row["wire_bytes_up_per_msg"]) == up, server
        assert float(row["wire_bytes_down_per_msg"]) == down, server
        assert float(row["wire_frames_up_per_msg"]) == frames
        assert float(row["wire_frames_down_per_msg"]) == frames
        assert float(row["msgs_per_cpu_s"]) > 0
    # Socket.IO's envelope (and, for binary, its placeholder frame) costs bytes on the wire.
    assert float(rows["socketio-aiohttp"]["wire_bytes_up_per_msg"]) > float(
        rows["websockets"]["wire_bytes_up_per_msg"]
    )
    if kind == "binary":
        assert rows["socketio-aiohttp"]["wire_frames_up_per_msg"] == "2.0"


def test_long_polling_echoes_every_message_with_two_http_requests(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--servers", "socketio-aiohttp,socketio-asgi", "--transport", "polling",
                 "--duration", "1", "--warmup", "0.3", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {r["server"] for r in rows} == {"socketio-aiohttp", "socketio-asgi"}
    for row in rows:
        assert row["transport"] == "polling"
        assert int(row["errors"]) == 0 and int(row["sent"]) == int(row["received"]) > 0
        # Closed loop, one message in flight: one POST to send it, one poll to get the echo.
        assert float(row["http_requests_per_msg"]) == 2.0
        # HTTP headers on both requests and responses: far more than a WebSocket frame's.
        # Known even when the server closed a keep-alive connection during the run (once
        # seen in CI): its socket keeps answering with its last counters (CountedSocket).
        up, down = float(row["wire_bytes_up_per_msg"]), float(row["wire_bytes_down_per_msg"])
        assert up > 200 and down > 100
        assert row["wire_frames_up_per_msg"] == "nan"  # no WebSocket frames to count
        # The calibrated ceiling is the WebSocket client's: it says nothing about this one.
        assert row["generator_headroom"] == "nan"


def test_open_loop_binary_over_socketio(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--servers", "socketio-aiohttp,websockets", "--mode", "open", "--rate",
                 "500", "--payload-kind", "binary", "--payload", "100", "--duration", "1",
                 "--warmup", "0.5", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    for row in rows:
        assert int(row["errors"]) == 0
        assert int(row["sent"]) == int(row["received"]) == 500
        assert float(row["send_lag_p99_us"]) >= 0


def test_target_with_server_pid_is_sampled(
    tmp_path: Path, server_process: Callable[[str, str], ServerProcess]
) -> None:
    server = server_process("websockets", "uvloop")
    out = tmp_path / "out"
    code = main(["run", "--target", f"http://localhost:{server.port}", "--protocol", "raw",
                 "--server-pid", str(server.process.pid), "--label", "mine", "--duration", "1",
                 "--warmup", "0.2", "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 0, row["failure"]
    assert row["server"] == "mine" and row["loop"] == "external"
    assert float(row["server_cpu_pct"]) > 0


def test_protocol_mismatch_fails_the_run_with_a_clear_line(
    tmp_path: Path, start_server: Callable[[str, str], int]
) -> None:
    port = start_server("websockets", "uvloop")
    out = tmp_path / "out"
    code = main(["run", "--target", f"ws://127.0.0.1:{port}/", "--protocol", "socketio",
                 "--duration", "1", "--warmup", "0", "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 3
    assert row["status"] == "failed" and "not a Socket.IO server" in row["failure"]


def test_two_workers_send_the_whole_schedule_and_merge_exactly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--servers", "aiohttp", "--workers", "2", "--connections", "4",
                 "--mode", "open", "--rate", "1000", "--duration", "1", "--warmup", "0",
                 "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 0, row["failure"]
    assert int(row["sent"]) == int(row["received"]) == 1000
    (record,) = [json.loads(line) for line in (out / "histograms.jsonl").read_text().splitlines()]
    from bench.metrics import histogram as hist

    parts = [hist.decode(blob) for blob in record["latency_hist"]]
    assert len(parts) == 2 and all(p.get_total_count() > 0 for p in parts)
    assert sum(p.get_total_count() for p in parts) == 1000
    assert float(row["p99_us"]) == hist.merge(record["latency_hist"]).get_value_at_percentile(99)


def test_capacity_mode_finds_a_rate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--servers", "aiohttp", "--mode", "capacity", "--slo-p99-ms", "50",
                 "--capacity-steps", "3", "--duration", "1", "--warmup", "0.3",
                 "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 0, row["failure"]
    assert float(row["capacity_msgs_s"]) > 0
    assert float(row["target_rate"]) == float(row["capacity_msgs_s"])
    assert float(row["p99_us"]) <= 50_000
    (record,) = [json.loads(line) for line in (out / "histograms.jsonl").read_text().splitlines()]
    # Three decisions, each by two agreeing probes of at most three.
    assert 3 * 2 <= len(record["capacity_probes"]) <= 3 * 3
    assert any(probe["passed"] for probe in record["capacity_probes"])


def test_calibrate_and_overhead_commands(tmp_path: Path) -> None:
    assert main(["calibrate", "--rounds", "1", "--duration", "0.5", "--out",
                 str(tmp_path / "cal")]) == 0  # fmt: skip
    (calibration,) = json.loads((tmp_path / "cal" / "meta.json").read_text())["calibration"]
    assert calibration["ceiling_msgs_s"] > 0 and len(calibration["rounds_msgs_s"]) == 1
    assert main(["overhead", "--rounds", "1", "--duration", "0.5", "--out",
                 str(tmp_path / "ovh")]) == 0  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "ovh" / "overhead.csv").open()))
    assert [r["client"] for r in rows] == ["reference", "wsbench"]
    assert all(float(r["msgs_s"]) > 0 for r in rows)
    verdict = json.loads((tmp_path / "ovh" / "overhead.json").read_text())
    assert verdict["throughput_ratio_median"] > 0


@pytest.mark.parametrize("rate", [None, "150"])
def test_connect_storm_sets_up_and_checks_every_connection(
    tmp_path: Path, rate: str | None
) -> None:
    out = tmp_path / "out"
    pace = ["--connect-rate", rate] if rate else []
    code = main(["run", "--mode", "connect", "--connections", "40", *pace, "--out", str(out)])
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {r["server"] for r in rows} == set(SERVERS)  # every server of the registry
    for row in rows:
        assert (row["scenario"], row["transport"]) == ("connect", "websocket")
        assert int(row["errors"]) == 0 and int(row["connect_failures"]) == 0
        # Every connection was set up, sent its one message, and got it back.
        assert int(row["sent"]) == int(row["received"]) == 40
        connects_per_s = float(row["connects_per_s"])
        if rate:
            # 40 attempts 1/150 s apart: the storm lasts at least the 39 intervals.
            assert float(row["target_conns_s"]) == 150.0
            assert 0 < connects_per_s <= 40 / (39 / 150)
        else:
            assert float(row["target_conns_s"]) == 0.0 and connects_per_s > 0
        assert 0 < float(row["connect_p50_us"]) <= float(row["connect_p99_us"])
        assert float(row["server_cpu_us_per_conn"]) > 0
        # Per connection, its set-up and one echo: at least the echo's 32-byte payload each
        # way, plus the HTTP upgrade (Socket.IO: and the handshake packets).
        assert (
            float(row["wire_bytes_up_per_msg"]) > 100
            and float(row["wire_bytes_down_per_msg"]) > 100
        )


def test_socketio_default_path_opens_over_polling_then_upgrades(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--mode", "connect", "--connections", "30", "--connect-rate", "100",
                 "--servers", "socketio-aiohttp,socketio-asgi", "--transport", "polling-upgrade",
                 "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {r["server"] for r in rows} == {"socketio-aiohttp", "socketio-asgi"}
    for row in rows:
        assert row["transport"] == "polling-upgrade"
        assert int(row["errors"]) == 0 and int(row["sent"]) == int(row["received"]) == 30
        # One polling GET per connection, its bytes counted with the WebSocket's.
        assert float(row["http_requests_per_msg"]) == 1.0
        assert float(row["wire_bytes_up_per_msg"]) > 300


def test_slow_consumers_are_accounted_apart_from_the_fast_receivers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--mode", "fanout", "--rate", "50", "--connections", "20",
                 "--slow-share", "0.25", "--duration", "1.5", "--warmup", "0.2",
                 "--servers", "websockets,socketio-aiohttp", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    for row in rows:
        # 5 of 20 receivers read slowly; the other 15 got every message.
        assert (row["slow_share"], row["slow_receivers"], row["recipients"]) == ("0.25", "5", "15")
        assert int(row["delivered"]) == int(row["sent"]) * 15 and int(row["missing"]) == 0
        # The slow ones caught up once the publishing stopped, unless the server dropped them.
        slow_total = int(row["slow_delivered"]) + int(row["slow_missing"])
        assert slow_total == int(row["sent"]) * 5
        assert int(row["slow_dropped"]) >= 0 and float(row["server_rss_growth_bytes"]) >= 0


def test_memory_slope_on_every_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--mode", "memory", "--memory-steps", "0,100,200", "--warmup", "0.3",
                 "--duration", "0.4", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    for row in rows:
        assert (row["scenario"], row["mode"], row["connections"]) == ("memory", "memory", "200")
        points = json.loads(row["mem_points"])
        assert [p[0] for p in points] == [0, 100, 200]
        assert all(rss > 0 and uss > 0 for _, rss, uss in points)
        slope = float(row["mem_kib_per_conn"])
        # Each open connection costs the server memory (kilobytes, not bytes or megabytes).
        assert 1 < slope < 1000, row
        assert (
            float(row["mem_kib_per_conn_ci_low"]) <= slope <= float(row["mem_kib_per_conn_ci_high"])
        )


def test_memory_of_a_server_someone_else_started(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_process("websockets", "uvloop")
    out = tmp_path / "out"
    code = main(["run", "--target", f"ws://127.0.0.1:{server.port}/", "--protocol", "raw",
                 "--server-pid", str(server.process.pid), "--mode", "memory",
                 "--memory-steps", "0,100,200", "--warmup", "0.3", "--duration", "0.4",
                 "--out", str(out)])  # fmt: skip
    (row,) = read_rows(out)
    assert code == 0, row["failure"]
    assert row["server"] == "raw" and 1 < float(row["mem_kib_per_conn"]) < 1000
    assert len(json.loads(row["mem_points"])) == 3


def test_reconnect_storm_recovers_every_client(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--mode", "reconnect", "--connections", "30", "--rate", "60",
                 "--warmup", "1", "--duration", "6", "--servers", "websockets,socketio-aiohttp",
                 "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert code == 0, [r["failure"] for r in rows]
    assert {r["server"] for r in rows} == {"websockets", "socketio-aiohttp"}
    for row in rows:
        assert row["scenario"] == "reconnect" and int(row["errors"]) == 0
        assert int(row["recovered_clients"]) == 30
        p50, all_s = float(row["recovery_p50_s"]), float(row["recovery_all_s"])
        # The server was down: recovery takes its restart at least, and ends within the run.
        assert 0 < p50 <= all_s < 6
        # 2 messages a second per client over 7 s; those around the kill are lost.
        assert int(row["sent"]) == 30 * 14
        assert int(row["lost"]) == int(row["sent"]) - int(row["received"]) > 0
        assert "doubling" in row["backoff"]
