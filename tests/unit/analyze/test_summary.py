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


def sliced(server: str, protocol: str, rounds: list[int], **extra: object) -> dict:
    """One pass of a time-sliced run: 2 s measured, echoes counted per round."""
    throughput = sum(rounds) / 2.0
    return run(server, protocol, 1, throughput, 10.0, duration_s=2.0,
               round_msgs=" ".join(map(str, rounds)), started_utc="2026-12-01T22:00:00+00:00",
               **extra)  # fmt: skip


def test_one_sliced_pass_gives_the_ratio_an_interval_over_its_rounds() -> None:
    raw_rounds = [1000, 1100, 900, 1000, 1050, 950]
    sio_rounds = [500, 600, 430, 520, 480, 470]
    summary = summarize(
        pd.DataFrame([sliced("aiohttp", "raw", raw_rounds),
                      sliced("socketio-aiohttp", "socketio", sio_rounds)])
    ).set_index("server")  # fmt: skip
    sio = summary.loc["socketio-aiohttp"]
    # The pass's own ratio (throughput over throughput), not a median of per-round ratios.
    assert sio["throughput_ratio_vs_aiohttp_median"] == pytest.approx(3000 / 6000)
    base = "throughput_ratio_vs_aiohttp"
    assert sio[f"{base}_ci_low"] < 0.5 < sio[f"{base}_ci_high"]
    assert sio["throughput_ratio_interval_over"] == "rounds"
    # Latency has no per-round figures: one pass, no interval.
    assert math.isnan(sio["p99_ratio_vs_aiohttp_ci_low"])
    # Raw rows carry no ratio, so no basis either.
    assert not isinstance(summary.loc["aiohttp"]["throughput_ratio_interval_over"], str)


@pytest.mark.parametrize(
    "change",
    [
        {"started_utc": "2026-12-01T23:00:00+00:00"},  # not loaded in the same rounds
        {"round_msgs": "1000 1100 900"},  # another round count
        {"round_msgs": "1000 0 900 1000 1050 950"},  # a round with no echo: no finite ratio
        {"round_msgs": math.nan},  # not sliced
    ],
    ids=["other-run", "other-rounds", "empty-round", "unsliced"],
)
def test_rounds_that_do_not_pair_give_no_interval(change: dict) -> None:
    raw = {**sliced("aiohttp", "raw", [1000, 1100, 900, 1000, 1050, 950]), **change}
    sio = sliced("socketio-aiohttp", "socketio", [500, 600, 430, 520, 480, 470])
    row = summarize(pd.DataFrame([raw, sio])).set_index("server").loc["socketio-aiohttp"]
    assert row["throughput_ratio_vs_aiohttp_median"] == pytest.approx(
        sio["throughput_msgs_s"] / raw["throughput_msgs_s"]
    )
    assert math.isnan(row["throughput_ratio_vs_aiohttp_ci_low"])
    assert row["throughput_ratio_interval_over"] == ""


def test_with_repeats_the_interval_stays_over_repeats() -> None:
    runs = [
        sliced("aiohttp", "raw", [1000, 1000]),
        sliced("socketio-aiohttp", "socketio", [500, 400]),
        {**sliced("aiohttp", "raw", [1000, 1000]), "repeat": 2, "throughput_msgs_s": 900.0},
        {**sliced("socketio-aiohttp", "socketio", [500, 400]), "repeat": 2,
         "throughput_msgs_s": 500.0},
    ]  # fmt: skip
    row = summarize(pd.DataFrame(runs)).set_index("server").loc["socketio-aiohttp"]
    ratios = sorted([450 / 1000, 500 / 900])
    assert (row["throughput_ratio_vs_aiohttp_ci_low"],
            row["throughput_ratio_vs_aiohttp_ci_high"]) == pytest.approx(ratios)  # fmt: skip
    assert row["throughput_ratio_interval_over"] == "repeats"


def test_efficiency_against_the_generator_is_the_ratio_of_their_cpu_in_each_run() -> None:
    runs = pd.DataFrame(
        [run("aiohttp", "raw", r, 100.0, 10.0, server_cpu_pct=server, generator_cpu_pct=gen)
         for r, server, gen in ((1, 100.0, 80.0), (2, 50.0, 40.0), (3, 90.0, 72.0))]
    )  # fmt: skip
    cell = summarize(runs).iloc[0]
    # 80/100, 40/50, 72/90: the host's speed moved both sides alike, the ratio held.
    assert cell["efficiency_vs_generator_median"] == pytest.approx(0.8)
    assert cell["efficiency_vs_generator_ci_low"] == pytest.approx(0.8)
    assert cell["efficiency_vs_generator_ci_high"] == pytest.approx(0.8)


def test_runs_from_before_the_generator_cpu_column_use_one_workers_client_cpu() -> None:
    one = summarize(pd.DataFrame([run("aiohttp", "raw", 1, 100.0, 10.0, server_cpu_pct=50.0,
                                      client_cpu_pct=25.0)]))  # fmt: skip
    assert one.iloc[0]["efficiency_vs_generator_median"] == pytest.approx(0.5)
    # Two generator processes: the busiest one's CPU is not their sum, so no figure.
    two = summarize(pd.DataFrame([run("aiohttp", "raw", 1, 100.0, 10.0, server_cpu_pct=50.0,
                                      client_cpu_pct=25.0, workers=2)]))  # fmt: skip
    assert math.isnan(two.iloc[0]["efficiency_vs_generator_median"])
