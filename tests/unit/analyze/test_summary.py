from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.analyze.summary import summarize


def run(
    server: str, protocol: str, repeat: int, throughput: float, p99: float, **extra: object
) -> dict:
    row = {
        "scenario": "echo", "server": server, "protocol": protocol, "transport": "websocket",
        "loop": "uvloop", "client": "fast", "mode": "closed", "connections": 10,
        "payload_bytes": 32, "payload_kind": "text", "target_rate": math.nan, "inflight": 1,
        "ack": False, "workers": 1, "repeat": repeat, "status": "ok", "errors": 0,
        "client_bound": False, "throughput_msgs_s": throughput, "p50_us": p99 / 2,
        "p99_us": p99,
    }  # fmt: skip
    row.update(extra)
    return row


def test_cells_ratios_and_flags() -> None:
    runs = pd.DataFrame(
        [
            run("aiohttp", "raw", 1, 100.0, 10.0),
            run("socketio-aiohttp", "socketio", 1, 20.0, 50.0),
            run("aiohttp", "raw", 2, 120.0, 10.0),
            run("socketio-aiohttp", "socketio", 2, 24.0, 40.0),
            run("aiohttp", "raw", 3, 80.0, 10.0),
            run("socketio-aiohttp", "socketio", 3, 16.0, 60.0),
            run("aiohttp", "raw", 4, 1.0, 1.0, status="failed"),
        ]
    )
    summary = summarize(runs).set_index("server")
    raw = summary.loc["aiohttp"]
    assert raw["repeats"] == 3 and raw["failed_runs"] == 1
    assert raw["throughput_median"] == 100.0
    assert (raw["throughput_ci_low"], raw["throughput_ci_high"]) == (80.0, 120.0)
    assert raw["throughput_cv"] == pytest.approx(0.2)
    assert bool(raw["unstable"])
    sio = summary.loc["socketio-aiohttp"]
    # Paired by repeat: 20/100, 24/120, 16/80 are all exactly 0.2, so the interval is a point.
    assert sio["throughput_ratio_vs_aiohttp_median"] == pytest.approx(0.2)
    assert sio["throughput_ratio_vs_aiohttp_ci_low"] == pytest.approx(0.2)
    assert sio["throughput_ratio_vs_aiohttp_ci_high"] == pytest.approx(0.2)
    assert sio["throughput_ratio_vs_aiohttp_cv"] == pytest.approx(0.0)
    assert sio["p99_ratio_vs_aiohttp_median"] == pytest.approx(5.0)
    assert math.isnan(sio["throughput_ratio_vs_websockets_median"])  # no websockets cell


def test_cells_differing_in_loop_are_not_paired() -> None:
    runs = pd.DataFrame(
        [run("aiohttp", "raw", 1, 100.0, 10.0, loop="asyncio"),
         run("socketio-aiohttp", "socketio", 1, 20.0, 50.0)]
    )  # fmt: skip
    sio = summarize(runs).set_index("server").loc["socketio-aiohttp"]
    assert math.isnan(sio["throughput_ratio_vs_aiohttp_median"])


def test_connect_cells_summarise_connections_per_second_and_set_up_latency() -> None:
    def storm(server: str, protocol: str, repeat: int, conns_s: float, p99_us: float) -> dict:
        return run(
            server, protocol, repeat, math.nan, 100.0, mode="connect", scenario="connect",
            target_conns_s=0.0, connects_per_s=conns_s, connect_p50_us=p99_us / 2,
            connect_p99_us=p99_us,
        )  # fmt: skip

    runs = pd.DataFrame(
        [storm("websockets", "raw", r, 2000.0 * r, 1000.0) for r in (1, 2, 3)]
        + [storm("socketio-asgi", "socketio", r, 500.0 * r, 4000.0) for r in (1, 2, 3)]
    )
    summary = summarize(runs).set_index("server")
    raw = summary.loc["websockets"]
    assert raw["connects_median"] == 4000.0
    assert (raw["connects_ci_low"], raw["connects_ci_high"]) == (2000.0, 6000.0)
    assert raw["connect_p99_median"] == 1000.0
    assert raw["throughput_cv"] == pytest.approx(0.5)  # of connections per second
    sio = summary.loc["socketio-asgi"]
    assert sio["connects_ratio_vs_websockets_median"] == pytest.approx(0.25)
    assert sio["connect_p99_ratio_vs_websockets_median"] == pytest.approx(4.0)


def test_a_memory_cell_of_one_pass_keeps_its_fits_interval() -> None:
    def memory(server: str, protocol: str, slope: float) -> dict:
        return run(
            server, protocol, 1, math.nan, math.nan, mode="memory", scenario="memory",
            mem_kib_per_conn=slope, mem_kib_per_conn_ci_low=slope - 1,
            mem_kib_per_conn_ci_high=slope + 1,
        )  # fmt: skip

    summary = summarize(
        pd.DataFrame([memory("aiohttp", "raw", 10.0), memory("socketio-aiohttp", "socketio", 30.0)])
    ).set_index("server")
    raw = summary.loc["aiohttp"]
    assert (raw["mem_kib_per_conn_median"], raw["mem_kib_per_conn_ci_low"]) == (10.0, 9.0)
    assert raw["mem_kib_per_conn_ci_high"] == 11.0
    assert summary.loc["socketio-aiohttp"]["mem_kib_per_conn_ratio_vs_aiohttp_median"] == 3.0
