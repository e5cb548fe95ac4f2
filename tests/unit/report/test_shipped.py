"""The report's "As shipped" part (bench.report.shipped), from hand-made summaries: the contract's
questions see only equalised cells without TLS, and the shipped question quotes both tiers."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.report import shipped
from bench.report.verdict import Figure, verdicts

NAN = math.nan


def cell(server: str, tier: str, throughput: float, wire: float, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": "shipped", "server": server, "transport": "websocket", "loop": "uvloop",
        "client": "fast", "mode": "closed", "connections": 10, "payload_bytes": 512,
        "payload_kind": "json", "target_rate": NAN, "target_conns_s": NAN, "repeats": 1,
        "tier": tier, "tls": False, "throughput_median": throughput, "p99_median": 1000.0,
        "wire_bytes_up_per_msg_median": wire, "wire_bytes_down_per_msg_median": wire - 4,
        "connect_p50_us_median": 900.0 if tier == "shipped" else 400.0,
        **extra,
    }  # fmt: skip


def memory(server: str, tier: str, kib: float) -> dict[str, Any]:
    scenario = "memory" if tier == "equalised" else "shipped"
    return {**cell(server, tier, NAN, NAN), "scenario": scenario, "mode": "memory",
            "connections": 1000, "payload_bytes": 32, "payload_kind": "text",
            "mem_kib_per_conn_median": kib, "mem_kib_per_conn_ci_low": kib - 0.5,
            "mem_kib_per_conn_ci_high": kib + 0.5}  # fmt: skip


def ratio(raw: str, value: float) -> dict[str, float]:
    return {f"throughput_ratio_vs_{raw}_median": value}


SUMMARY = pd.DataFrame.from_records([
    cell("aiohttp", "equalised", 40000, 520),
    cell("socketio-aiohttp", "equalised", 6000, 531, **ratio("aiohttp", 0.15)),
    cell("aiohttp", "shipped", 20000, 25),
    cell("socketio-aiohttp", "shipped", 4000, 26, **ratio("aiohttp", 1.2)),
    memory("aiohttp", "equalised", 13.0),
    memory("aiohttp", "shipped", 13.5),
    memory("socketio-aiohttp", "equalised", 30.0),
    memory("socketio-aiohttp", "shipped", 120.0),
])  # fmt: skip


def text(parts: list[Any]) -> str:
    return "".join(p.text if isinstance(p, Figure) else p for p in parts)


def test_the_table_sets_each_servers_tiers_side_by_side() -> None:
    rows = {r["server"]: r for r in shipped.table(SUMMARY)}
    assert list(rows) == ["aiohttp", "socketio-aiohttp"]  # the catalog's order
    assert rows["socketio-aiohttp"]["memory_equalised"] == "30.0"
    assert rows["socketio-aiohttp"]["memory_shipped"] == "120.0"
    assert rows["aiohttp"]["throughput_shipped"] == "20,000"
    assert rows["aiohttp"]["wire_equalised"] == "1,036.0"  # up + down
    assert rows["aiohttp"]["wire_shipped"] == "46.0"
    assert rows["aiohttp"]["setup_shipped"] == "900"


def test_the_verdict_quotes_both_tiers_and_says_which_conclusion_changed() -> None:
    found = shipped.verdict(SUMMARY)
    said = text(found.parts)
    assert "aiohttp sends 520 B up per message under the contract and 25 B as shipped" in said
    assert "socketio-aiohttp 30.0 KiB to 120.0 KiB" in said
    # Socket.IO was below its raw counterpart under the contract and above it as shipped.
    assert "It changes with the defaults: socketio-aiohttp/aiohttp throughput: 0.15" in said
    assert "holds" not in said
    for figure in found.figures:  # every figure is the summary cell it names
        assert SUMMARY.loc[figure.row, figure.column] == figure.value


def test_the_contracts_questions_never_see_shipped_or_tls_cells() -> None:
    tls = cell("aiohttp", "equalised", 1.0, 520, tls=True, scenario="echo")
    summary = pd.concat([SUMMARY, pd.DataFrame.from_records([tls])], ignore_index=True)
    assert list(shipped.contract(summary).index) == [0, 1, 4, 6]
    keys = {v.key: v for v in verdicts(summary)}
    assert keys["shipped"].favours == "neither"
    # The memory question compares the contract's cells only: 13 against 30 KiB.
    assert "120" not in text(keys["memory"].parts)


def test_without_shipped_cells_the_question_is_left_out() -> None:
    contract_only = shipped.contract(SUMMARY)
    assert shipped.verdict(contract_only).favours == "unmeasured"
    assert shipped.table(contract_only) == []
    assert "shipped" not in {v.key for v in verdicts(contract_only)}
