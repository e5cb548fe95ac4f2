from __future__ import annotations

import json
import math
from dataclasses import replace

from bench.load.fanout import deaf_workers
from bench.load.plan import WorkerReport
from bench.metrics import histogram as hist
from bench.modes.fanout import per_worker_text
from bench.results import messages_per_cpu_second, round_messages, row
from bench.runner import RunResult
from bench.spec import RunSpec


def test_messages_per_cpu_second_is_throughput_over_the_cpu_used() -> None:
    assert messages_per_cpu_second(4_000, 50.0) == 8_000  # half a core for 4,000 msgs/s
    assert messages_per_cpu_second(30_000, 100.0) == 30_000
    assert math.isnan(messages_per_cpu_second(4_000, math.nan))  # not sampled
    assert math.isnan(messages_per_cpu_second(4_000, 0.0))


def connect_result(opened: int, failures: int, storm_s: float, server_cpu_s: float) -> RunResult:
    setup = hist.new_histogram()
    for set_up_ms in range(1, opened + 1):
        setup.record_value(set_up_ms * 1000)  # the histograms hold µs
    empty = hist.encode(hist.new_histogram())
    report = WorkerReport(
        worker_index=0, connections=opened, sent=opened, received=opened - 1, missing=1,
        unexpected=0, disconnects=0, latency_hist=empty, send_lag_hist=empty,
        connect_hist=hist.encode(setup), connect_s=storm_s, connect_failures=failures,
    )  # fmt: skip
    spec = RunSpec(
        scenario="connect", server="aiohttp", protocol="raw", loop="uvloop", mode="connect",
        connections=opened + failures, payload_bytes=32, payload_kind="text", warmup_s=0.0,
        duration_s=10.0, rate_conns_s=200.0,
    )  # fmt: skip
    result = RunResult(spec, "r", "t", reports=[report], connect_s=storm_s)
    result.server_storm_cpu_s = server_cpu_s
    return result


def test_a_connect_row_counts_connections_not_messages() -> None:
    record = row(connect_result(opened=100, failures=3, storm_s=0.5, server_cpu_s=0.05))
    assert record["connects_per_s"] == 200.0  # 100 set up in 0.5 s
    assert record["connect_failures"] == 3
    assert record["errors"] == 3 + 1  # failed attempts and the one missing first echo
    assert record["target_conns_s"] == 200.0
    assert record["server_cpu_us_per_conn"] == 500.0  # 50 ms of CPU over 100 connections
    assert math.isnan(record["throughput_msgs_s"])  # one message per connection: no rate
    assert 49_000 <= record["connect_p50_us"] <= 51_000  # set-ups of 1..100 ms
    assert record["mode"] == "connect" and math.isnan(record["msgs_per_cpu_s"])


def test_message_rows_have_no_connect_figures() -> None:
    result = connect_result(opened=10, failures=0, storm_s=1.0, server_cpu_s=0.01)
    result.spec = RunSpec(**{**result.spec.as_dict(), "mode": "closed", "rate_conns_s": 0.0})
    record = row(result)
    assert math.isnan(record["connects_per_s"]) and math.isnan(record["target_conns_s"])
    assert record["throughput_msgs_s"] == 0.9  # 9 echoes over the 10-s window


def closed_loop_result(generator_steal_pct: float, mode: str = "closed") -> RunResult:
    result = connect_result(opened=10, failures=0, storm_s=1.0, server_cpu_s=0.01)
    result.spec = RunSpec(**{**result.spec.as_dict(), "mode": mode, "rate_conns_s": 0.0})
    result.generator_cpus_steal_pct = generator_steal_pct
    return result


def test_a_closed_loop_whose_generator_the_host_paused_is_client_bound() -> None:
    assert row(closed_loop_result(generator_steal_pct=25.0))["client_bound"]
    assert row(closed_loop_result(generator_steal_pct=10.0))["client_bound"]
    assert not row(closed_loop_result(generator_steal_pct=2.0))["client_bound"]
    assert not row(closed_loop_result(generator_steal_pct=math.nan))["client_bound"]
    # An open loop's schedule does not wait for the server: a paused generator shows there
    # as send lag, which has its own test.
    assert not row(closed_loop_result(25.0, mode="open"))["client_bound"]


def test_a_memory_row_fits_the_servers_memory_over_the_connections_held() -> None:
    result = connect_result(opened=10, failures=0, storm_s=1.0, server_cpu_s=0.01)
    result.spec = RunSpec(
        **{**result.spec.as_dict(), "mode": "memory", "memory_steps": (0, 1000, 2000)}
    )
    mib = 1024 * 1024
    # 20 KiB per connection on top of 30 MiB (USS: 16 KiB on top of 10 MiB).
    result.memory_points = [
        (n, 30 * mib + n * 20 * 1024, 10 * mib + n * 16 * 1024) for n in (0, 1000, 2000)
    ]
    record = row(result)
    assert record["mem_kib_per_conn"] == 20.0 and record["mem_uss_kib_per_conn"] == 16.0
    assert record["mem_kib_per_conn_ci_low"] == 20.0 == record["mem_kib_per_conn_ci_high"]
    assert record["mem_r2"] == 1.0 and record["mem_intercept_mib"] == 30.0
    assert json.loads(record["mem_points"])[1] == [
        1000,
        30 * mib + 1000 * 20 * 1024,
        10 * mib + 1000 * 16 * 1024,
    ]
    assert math.isnan(record["throughput_msgs_s"])


def worker_report(rounds: list[int]) -> WorkerReport:
    empty = hist.encode(hist.new_histogram())
    return WorkerReport(
        worker_index=0, connections=5, sent=sum(rounds), received=sum(rounds), missing=0,
        unexpected=0, disconnects=0, latency_hist=empty, send_lag_hist=empty,
        connect_hist=empty, connect_s=0.1, round_received=rounds,
    )  # fmt: skip


def test_round_messages_sum_the_workers_round_by_round() -> None:
    assert round_messages([worker_report([3, 4, 5]), worker_report([10, 20, 30])]) == "13 24 35"
    # Not sliced, or workers that disagree on the rounds: no per-round counts at all.
    assert round_messages([worker_report([])]) == ""
    assert round_messages([worker_report([1, 2]), worker_report([1, 2, 3])]) == ""
    assert round_messages([]) == ""


def scale_out_report(receivers: dict[str, int], delivered: dict[str, int]) -> WorkerReport:
    report = worker_report([])
    report.worker_receivers.update(receivers)
    report.worker_delivered.update(delivered)
    return report


def test_a_server_process_whose_receivers_got_nothing_is_named() -> None:
    fine = scale_out_report({"0": 500, "1": 500}, {"0": 5000, "1": 5000})
    assert deaf_workers([fine], 2) == []
    deaf = scale_out_report({"0": 500, "1": 500}, {"0": 5000, "1": 0})
    assert deaf_workers([deaf], 2) == ["server worker 1 delivered nothing to its 500 receivers"]
    lonely = scale_out_report({"0": 1000}, {"0": 10000})
    assert deaf_workers([lonely], 2) == [
        "server worker 1 got no receivers (the kernel put them all on the others)"
    ]


def test_per_worker_counts_read_in_worker_order() -> None:
    assert per_worker_text({"10": 1, "2": 3, "0": 5}) == "0:5 2:3 10:1"


def test_a_process_the_broker_fault_took_down_is_named_in_its_row() -> None:
    from bench.modes.fanout import broker_fault_fields

    ns = 1_000_000_000
    report = replace(worker_report([]), publisher_worker=1)
    report.worker_receivers.update({"0": 2, "1": 2})
    # Four messages a second apart; the broker back at 1.5 s; process 1 (the publisher's)
    # gone with it, so nothing reached anyone afterwards.
    report.message_intended_ns.extend([0, ns, 2 * ns, 3 * ns])
    report.worker_message_delivered.update({"0": [2, 0, 0, 0], "1": [2, 2, 0, 0]})
    spec = RunSpec(
        scenario="broker-fault", server="node-socketio", protocol="socketio", loop="libuv",
        mode="fanout", connections=4, payload_bytes=32, payload_kind="text", warmup_s=0.0,
        duration_s=4.0, rate_msgs_s=1.0, server_workers=2, broker_fault=True,
    )  # fmt: skip
    result = RunResult(spec, "r", "t", reports=[report])
    result.broker_killed_ns, result.broker_restarted_ns = ns // 2, 3 * ns // 2
    result.exited_workers = {1: "status 1; its log ends: Error: read ECONNRESET"}
    fields = broker_fault_fields(result)
    assert fields["exited_workers"] == "1"
    assert fields["broker_fault_note"].startswith(
        "server worker 1 exited during the fault (status 1; its log ends: Error: read ECONNRESET)"
    )
    assert "server worker 0 did not recover" in fields["broker_fault_note"]
    assert fields["lost_broadcasts"] == 3 and math.isnan(fields["broker_recovery_s"])
    # Without an exit, the column is empty and the note only says who never recovered.
    result.exited_workers = {}
    assert broker_fault_fields(result)["exited_workers"] == ""
    assert not broker_fault_fields(result)["broker_fault_note"].startswith("server worker 1 exited")
