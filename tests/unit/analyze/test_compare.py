from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.analyze.compare import (
    SINGLE_PASS,
    deltas,
    generator_hosts,
    stamp_differences,
    verdict,
)

META = {
    "machine": {"cpu_model": "X", "cpu_count": 2, "governor": None, "hostname": "a"},
    "os": {"kernel": "6.1", "libc": "glibc 2.36"},
    "python": {"version": "3.11.7", "implementation": "CPython"},
    "packages": {"websockets": "17.4", "aiohttp": "3.14.5"},
    "pinning": {"server_cpus": [0], "generator_cpus": [1]},
    "fairness": {"compression": "off"},
}


def test_identical_stamps_and_irrelevant_fields_do_not_count() -> None:
    other = {**META, "machine": {**META["machine"], "hostname": "b"}, "created_utc": "later"}
    assert stamp_differences(META, other) == []


def test_result_moving_fields_are_named() -> None:
    other = {**META, "packages": {**META["packages"], "aiohttp": "3.11.0"},
             "os": {"kernel": "6.8", "libc": "musl 1.2"}}  # fmt: skip
    assert stamp_differences(META, other) == [
        "os.kernel: '6.1' -> '6.8'",
        "os.libc: 'glibc 2.36' -> 'musl 1.2'",
        "packages.aiohttp: '3.14.5' -> '3.11.0'",
    ]


def cell(server: str, throughput: tuple[float, float, float]) -> dict:
    base = {"scenario": "echo", "server": server, "protocol": "raw", "transport": "websocket",
            "loop": "uvloop", "client": "fast", "mode": "closed", "connections": 10,
            "payload_bytes": 32, "payload_kind": "text", "target_rate": math.nan,
            "inflight": 1, "ack": False, "workers": 1}  # fmt: skip
    for metric in ("p50", "p99"):
        base.update(
            {f"{metric}_median": 100.0, f"{metric}_ci_low": 90.0, f"{metric}_ci_high": 110.0}
        )
    low, median, high = throughput
    base.update({"throughput_median": median, "throughput_ci_low": low, "throughput_ci_high": high})
    return base


def test_deltas_match_cells_and_judge_overlap() -> None:
    old = pd.DataFrame([cell("aiohttp", (90, 100, 110)), cell("websockets", (90, 100, 110))])
    new = pd.DataFrame([cell("aiohttp", (120, 130, 140)), cell("websockets", (95, 105, 115))])
    table = deltas(old, new)
    throughput = table[table["metric"] == "throughput"].set_index("server")
    assert throughput.loc["aiohttp", "change_pct"] == 30.0
    assert not throughput.loc["aiohttp", "intervals_overlap"]
    assert throughput.loc["websockets", "change_pct"] == 5.0
    assert throughput.loc["websockets", "intervals_overlap"]
    assert len(table) == 6  # two cells, three metrics


def test_verdict_follows_each_metrics_better_direction() -> None:
    assert verdict("throughput", 100.0, 130.0, intervals_overlap=False) == "improvement"
    assert verdict("throughput", 100.0, 70.0, intervals_overlap=False) == "regression"
    assert verdict("p99", 100.0, 130.0, intervals_overlap=False) == "regression"
    assert verdict("connect_p50", 100.0, 70.0, intervals_overlap=False) == "improvement"
    assert verdict("connects", 100.0, 130.0, intervals_overlap=False) == "improvement"
    assert verdict("p50", 100.0, 300.0, intervals_overlap=True) == "not distinguishable"
    assert verdict("unknown_metric", 100.0, 130.0, intervals_overlap=False) == "changed"
    assert verdict("throughput", math.nan, 130.0, intervals_overlap=False) == "changed"
    # One pass on either side: its "interval" is one value, so no verdict is drawn from it.
    assert verdict("throughput", 100.0, 30.0, False, fewest_repeats=1) == SINGLE_PASS
    assert verdict("throughput", 100.0, 30.0, False, fewest_repeats=2) == "regression"


def test_deltas_add_direction_and_verdict_without_changing_the_other_columns() -> None:
    old = pd.DataFrame([cell("aiohttp", (90, 100, 110)), cell("websockets", (120, 130, 140))])
    new = pd.DataFrame([cell("aiohttp", (120, 130, 140)), cell("websockets", (90, 100, 110))])
    table = deltas(old, new)
    assert list(table.columns[-2:]) == ["better", "verdict"]
    throughput = table[table["metric"] == "throughput"].set_index("server")
    assert throughput.loc["aiohttp", "verdict"] == "improvement"
    assert throughput.loc["websockets", "verdict"] == "regression"
    assert throughput.loc["websockets", "better"] == "higher"
    latency = table[table["metric"] == "p99"]
    assert set(latency["better"]) == {"lower"}
    assert set(latency["verdict"]) == {"not distinguishable"}


def test_shards_on_other_machines_are_a_stamp_difference() -> None:
    def with_hosts(*cpus: str) -> dict[str, Any]:
        hosts = {f"tcp://10.0.0.{i}:4000{i}": {"host": f"h{i}", "cpu_model": cpu, "cpu_count": 8,
                 "python": "3.11.7", "packages": {"picows": "1.0"}}
                 for i, cpu in enumerate(cpus)}  # fmt: skip
        return {**META, "cluster": {"kind": "scheduler", "hosts": hosts}}

    # Other addresses and names, the same machines: comparable.
    assert stamp_differences(with_hosts("EPYC", "EPYC"), with_hosts("EPYC", "EPYC")) == []
    assert generator_hosts(with_hosts("EPYC", "EPYC")) == generator_hosts(with_hosts("EPYC"))
    differences = stamp_differences(with_hosts("EPYC"), with_hosts("EPYC", "Xeon"))
    assert differences and differences[0].startswith("cluster.hosts")
