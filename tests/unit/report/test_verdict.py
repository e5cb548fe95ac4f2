"""The verdict: wording follows the intervals, every figure is a summary cell, absent scenarios
say so."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from bench.report.verdict import Figure, format_value, judge, verdicts

NAN = math.nan


def echo_cell(server: str, throughput: float, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": "echo", "server": server, "transport": "websocket", "loop": "uvloop",
        "client": "fast", "mode": "closed", "connections": 10, "payload_bytes": 32,
        "payload_kind": "text", "target_rate": NAN, "target_conns_s": NAN, "repeats": 3,
        "throughput_median": throughput, "p99_median": 1000.0,
        "wire_bytes_up_per_msg_median": 51.0 if server.startswith("socketio") else 38.0,
        "wire_bytes_down_per_msg_median": 47.0 if server.startswith("socketio") else 34.0,
        **extra,
    }  # fmt: skip


def ratio(prefix: str, raw: str, median: float, low: float, high: float) -> dict[str, float]:
    base = f"{prefix}_ratio_vs_{raw}"
    return {f"{base}_median": median, f"{base}_ci_low": low, f"{base}_ci_high": high}


def summary_of(*cells: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(cells))


def by_key(summary: pd.DataFrame) -> dict[str, Any]:
    return {v.key: v for v in verdicts(summary)}


def sentence(verdict: Any) -> str:
    return "".join(p.text if isinstance(p, Figure) else p for p in verdict.parts)


def test_ratio_interval_below_one_favours_plain_websockets_for_throughput() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0),
        echo_cell("socketio-aiohttp", 6_000.0, **ratio("throughput", "aiohttp", 0.1, 0.09, 0.11)),
    )
    verdict = by_key(summary)["throughput"]
    assert verdict.favours == "raw"
    text = sentence(verdict)
    assert "socketio-aiohttp/aiohttp throughput ratio 0.10 [0.09, 0.11]" in text
    assert "plain WebSockets better" in text and "indistinguishable" not in text
    assert verdict.reason


def test_an_interval_that_includes_one_makes_the_stacks_indistinguishable() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 6_000.0),
        echo_cell("socketio-aiohttp", 6_100.0, **ratio("throughput", "aiohttp", 1.02, 0.95, 1.1)),
    )
    verdict = by_key(summary)["throughput"]
    assert verdict.favours == "neither"
    assert "indistinguishable" in sentence(verdict)
    assert verdict.reason == ""  # nothing to put on either "use ... when" list


def test_lower_is_better_metrics_favour_the_side_with_the_smaller_figure() -> None:
    assert judge(0.5, 0.4, 0.6, higher_is_better=False) == "socketio"
    assert judge(2.0, 1.5, 2.5, higher_is_better=False) == "raw"
    assert judge(2.0, 1.5, 2.5, higher_is_better=True) == "socketio"
    assert judge(0.9, 0.8, 1.0, higher_is_better=True) == "neither"  # 1.0 inside, inclusive


@pytest.mark.parametrize(("low", "high"), [(NAN, NAN), (0.5, 0.5)])
def test_one_pass_is_not_ranked(low: float, high: float) -> None:
    assert judge(0.5, low, high, higher_is_better=True) is None
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0, repeats=1),
        echo_cell("socketio-aiohttp", 6_000.0, repeats=1,
                  **ratio("throughput", "aiohttp", 0.1, low, high)),
    )  # fmt: skip
    verdict = by_key(summary)["throughput"]
    assert verdict.favours == "neither"
    assert "no ranking claimed" in sentence(verdict)


def test_pairs_follow_the_websocket_implementation() -> None:
    # socketio-asgi runs websockets' protocol under uvicorn: it is compared with websockets,
    # not with aiohttp, even when both ratios are in the summary.
    summary = summary_of(
        echo_cell("websockets", 30_000.0),
        echo_cell("socketio-asgi", 6_000.0,
                  **ratio("throughput", "websockets", 0.2, 0.19, 0.21),
                  **ratio("throughput", "aiohttp", 0.1, 0.09, 0.11)),
    )  # fmt: skip
    text = sentence(by_key(summary)["throughput"])
    assert "socketio-asgi/websockets throughput ratio 0.20" in text
    assert "socketio-asgi/aiohttp" not in text


def test_every_figure_is_the_summary_cell_it_names() -> None:
    summary = summary_of(
        echo_cell("websockets", 29_662.0),
        echo_cell("aiohttp", 59_287.0),
        echo_cell("socketio-aiohttp", 6_809.0, **ratio("throughput", "aiohttp", 0.11, 0.1, 0.12)),
        echo_cell("socketio-asgi", 6_085.0,
                  **ratio("throughput", "websockets", 0.21, 0.2, 0.21)),
    )  # fmt: skip
    found = verdicts(summary)
    figures = [f for v in found for f in v.figures]
    assert len(figures) > 10
    for figure in figures:
        assert figure.value == summary.loc[figure.row, figure.column]


def test_scenarios_missing_from_the_run_are_said_to_be_unmeasured() -> None:
    found = by_key(summary_of(echo_cell("websockets", 30_000.0)))
    for key in ("memory", "connect", "fanout", "reconnect", "slow-consumer", "polling"):
        assert found[key].favours == "unmeasured"
        assert sentence(found[key]) == "Not measured in this run."
    assert "capacity" not in found  # only when the run searched for it


def test_wire_bytes_compare_counts_directly() -> None:
    summary = summary_of(echo_cell("aiohttp", 1.0), echo_cell("socketio-aiohttp", 1.0))
    verdict = by_key(summary)["wire"]
    assert verdict.favours == "raw"
    assert "aiohttp 38 B, socketio-aiohttp 51 B" in sentence(verdict)


def test_memory_with_one_pass_is_judged_by_the_fits_own_intervals() -> None:
    def memory_cell(server: str, slope: float, low: float, high: float) -> dict[str, Any]:
        return {**echo_cell(server, NAN), "scenario": "memory", "mode": "memory",
                "connections": 5000, "repeats": 1, "mem_kib_per_conn_median": slope,
                "mem_kib_per_conn_ci_low": low, "mem_kib_per_conn_ci_high": high}  # fmt: skip

    apart = summary_of(memory_cell("aiohttp", 13.5, 13.2, 13.7),
                       memory_cell("socketio-aiohttp", 30.9, 30.8, 31.0))  # fmt: skip
    assert by_key(apart)["memory"].favours == "raw"
    overlapping = summary_of(memory_cell("aiohttp", 13.5, 12.0, 15.0),
                             memory_cell("socketio-aiohttp", 14.0, 13.0, 16.0))  # fmt: skip
    assert by_key(overlapping)["memory"].favours == "neither"


def test_format_value_units() -> None:
    assert format_value(571.4, "us") == "571 µs"
    assert format_value(3420.0, "us") == "3.42 ms"
    assert format_value(1_019_500.0, "us") == "1,020 ms"  # not 1.02e+03
    assert format_value(0.114, "ratio") == "0.11"
    assert format_value(29662.0, "msgs/s") == "29,662 msgs/s"
    assert format_value(12.84, "KiB") == "12.8 KiB"
    assert format_value(NAN, "s") == "n/a"


def test_a_side_wins_when_the_other_pairs_are_indistinguishable() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0),
        echo_cell("websockets", 30_000.0),
        echo_cell("socketio-aiohttp", 6_000.0, **ratio("throughput", "aiohttp", 0.1, 0.09, 0.11)),
        echo_cell("socketio-asgi", 29_000.0,
                  **ratio("throughput", "websockets", 0.97, 0.9, 1.05)),
    )  # fmt: skip
    verdict = by_key(summary)["throughput"]
    assert verdict.favours == "raw" and verdict.partly


def test_pairs_going_opposite_ways_are_mixed() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0),
        echo_cell("websockets", 30_000.0),
        echo_cell("socketio-aiohttp", 6_000.0, **ratio("throughput", "aiohttp", 0.1, 0.09, 0.11)),
        echo_cell("socketio-asgi", 60_000.0, **ratio("throughput", "websockets", 2.0, 1.9, 2.1)),
    )
    verdict = by_key(summary)["throughput"]
    assert verdict.favours == "mixed" and verdict.reason == ""


def test_cells_the_generator_may_have_limited_are_named_with_their_counts() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0, client_bound_runs=2),
        echo_cell("socketio-aiohttp", 6_000.0, client_bound_runs=0,
                  **ratio("throughput", "aiohttp", 0.1, 0.09, 0.11)),
    )  # fmt: skip
    verdict = by_key(summary)["throughput"]
    text = sentence(verdict)
    assert text.endswith("Runs flagged client_bound (the generator may have limited them): "
                         "aiohttp 2 of 3.")  # fmt: skip
    counts = [f for f in verdict.figures if f.column in ("client_bound_runs", "repeats")]
    assert [(f.row, f.column, f.value) for f in counts] == [
        (0, "client_bound_runs", 2.0), (0, "repeats", 3.0),
    ]  # fmt: skip
    # No flagged run: no caveat.
    clean = summary.assign(client_bound_runs=0)
    assert "client_bound" not in sentence(by_key(clean)["throughput"])


def node_cell(server: str, throughput: float, **extra: Any) -> dict[str, Any]:
    return {**echo_cell(server, throughput, **extra), "loop": "libuv"}


def test_protocol_cost_sets_node_socketio_against_python_socketio() -> None:
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0),
        echo_cell("socketio-aiohttp", 7_000.0, **ratio("throughput", "aiohttp", 0.12, 0.11, 0.13)),
        echo_cell("node-ws", 50_000.0),  # on uvloop it would not be Node's: its loop is libuv
        node_cell("node-ws", 40_000.0),
        node_cell("node-socketio", 24_000.0, **ratio("throughput", "node-ws", 0.6, 0.55, 0.65)),
    )
    verdict = by_key(summary)["protocol-cost"]
    text = sentence(verdict)
    assert "throughput ratio of 0.60 [0.55, 0.65] to its raw server (node-socketio/node-ws)" in text
    assert "0.12 [0.11, 0.13] (socketio-aiohttp/aiohttp)" in text
    assert "most of python-socketio's cost is its implementation" in text
    assert verdict.favours == "neither"
    for figure in verdict.figures:
        assert figure.value == summary.loc[figure.row, figure.column]
    # Node's cells are quoted on their own loop in the throughput sentence too.
    throughput = sentence(by_key(summary)["throughput"])
    assert "node-ws 40,000 msgs/s" in throughput
    assert "node-socketio/node-ws throughput ratio 0.60" in throughput


def test_protocol_cost_with_overlapping_intervals_blames_the_protocol() -> None:
    summary = summary_of(
        echo_cell("socketio-aiohttp", 7_000.0, **ratio("throughput", "aiohttp", 0.58, 0.5, 0.6)),
        node_cell("node-socketio", 24_000.0, **ratio("throughput", "node-ws", 0.6, 0.55, 0.65)),
    )
    assert "its cost is the protocol's" in sentence(by_key(summary)["protocol-cost"])


def test_protocol_cost_without_node_says_what_it_needs() -> None:
    summary = summary_of(
        echo_cell("socketio-aiohttp", 7_000.0, **ratio("throughput", "aiohttp", 0.12, 0.11, 0.13))
    )
    verdict = by_key(summary)["protocol-cost"]
    assert verdict.favours == "unmeasured"
    assert "needs node-socketio and node-ws" in sentence(verdict)


def test_an_interval_over_one_passs_rounds_is_said_to_be_so() -> None:
    one_pass = {"repeats": 1, "throughput_ratio_interval_over": "rounds"}
    summary = summary_of(
        echo_cell("aiohttp", 60_000.0, repeats=1),
        echo_cell("socketio-aiohttp", 7_000.0, **one_pass,
                  **ratio("throughput", "aiohttp", 0.12, 0.11, 0.13)),
        node_cell("node-ws", 40_000.0, repeats=1),
        node_cell("node-socketio", 24_000.0, **one_pass,
                  **ratio("throughput", "node-ws", 0.6, 0.55, 0.65)),
    )  # fmt: skip
    note = "(over the rounds of one time-sliced pass)"
    cost = sentence(by_key(summary)["protocol-cost"])
    assert f"0.60 [0.55, 0.65] {note} to its raw server" in cost
    assert f"0.12 [0.11, 0.13] {note} (socketio-aiohttp/aiohttp)" in cost
    assert f"throughput ratio 0.12 [0.11, 0.13] {note}" in sentence(by_key(summary)["throughput"])
    # Over repeats: no such note.
    repeated = summary.assign(throughput_ratio_interval_over="repeats")
    assert note not in sentence(by_key(repeated)["protocol-cost"])


def scale_cell(server: str, mode: str, workers: int, **extra: Any) -> dict[str, Any]:
    return {**echo_cell(server, extra.pop("throughput", NAN)), "scenario": "scaleout",
            "mode": mode, "server_workers": workers, **extra}  # fmt: skip


def test_scale_out_quotes_local_and_remote_latency_echo_at_one_and_two_and_broker_faults() -> None:
    summary = summary_of(
        scale_cell("websockets", "fanout", 2, recipients_median=1000.0,
                   fanout_local_p50_us_median=12_000.0, fanout_remote_p50_us_median=32_000.0),
        scale_cell("websockets", "closed", 1, throughput=8_000.0),
        scale_cell("websockets", "closed", 2, throughput=8_500.0),
        {**scale_cell("websockets", "fanout", 2), "scenario": "broker-fault",
         "broker_recovery_s_median": 1.9, "lost_broadcasts_median": 150.0},
    )  # fmt: skip
    verdict = by_key(summary)["scaleout"]
    text = sentence(verdict)
    assert "publisher's process websockets 12 ms; across the broker websockets 32 ms" in text
    assert "Echo, one process: websockets 8,000; two: websockets 8,500 msgs/s" in text
    assert "whole again after websockets 1.90 s; broadcasts lost websockets 150" in text
    assert verdict.favours == "neither" and verdict.chart == "chart-scaleout"
    for figure in verdict.figures:
        assert figure.value == summary.loc[figure.row, figure.column]


def test_a_broker_fault_alone_is_reported_and_servers_that_never_recovered_named() -> None:
    summary = summary_of(
        {**scale_cell("websockets", "fanout", 2), "scenario": "broker-fault",
         "broker_recovery_s_median": 1.9, "lost_broadcasts_median": 150.0},
        {**scale_cell("node-socketio", "fanout", 2), "scenario": "broker-fault",
         "broker_recovery_s_median": NAN, "lost_broadcasts_median": 225.0},
    )  # fmt: skip
    verdict = by_key(summary)["scaleout"]
    text = sentence(verdict)
    assert verdict.favours == "neither"
    assert "broadcasts lost websockets 150, node-socketio 225" in text
    assert "Not whole again within the run" in text and text.count("node-socketio") >= 2


def test_scale_out_unmeasured_without_its_rows() -> None:
    verdict = by_key(summary_of(echo_cell("aiohttp", 1.0)))["scaleout"]
    assert verdict.favours == "unmeasured"
