"""The feature matrix names the scenarios of this run that exercised each feature."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report.features import NOT_MEASURED, feature_matrix, use_when
from bench.report.verdict import Verdict


def run(scenario: str, protocol: str = "socketio", **extra: Any) -> dict[str, Any]:
    return {"scenario": scenario, "protocol": protocol, "status": "ok", "mode": "closed",
            "transport": "websocket", "payload_kind": "text", "ack": False, **extra}  # fmt: skip


def test_features_name_their_scenarios_or_say_not_measured() -> None:
    runs = pd.DataFrame.from_records([
        run("fanout", mode="fanout"),
        run("ack", ack=True),
        run("polling", transport="polling"),
        run("payload", payload_kind="binary", protocol="raw"),  # raw binary: not Socket.IO's
    ])  # fmt: skip
    rows = {row.name: row for row in feature_matrix(runs)}
    assert rows["Rooms and broadcast"].measured_by == "fanout"
    assert rows["Acknowledgements"].measured_by == "ack"
    assert rows["HTTP long-polling fallback"].measured_by == "polling"
    assert rows["Automatic reconnection"].measured_by == NOT_MEASURED
    assert rows["Binary attachments"].measured_by == NOT_MEASURED
    assert rows["Horizontal scaling through a message queue"].measured_by == NOT_MEASURED
    assert rows["Namespaces"].measured_by == "ack, fanout, polling"


def test_failed_runs_do_not_count_as_exercising_a_feature() -> None:
    runs = pd.DataFrame.from_records([run("reconnect", mode="reconnect", status="failed")])
    rows = {row.name: row for row in feature_matrix(runs)}
    assert rows["Automatic reconnection"].measured_by == NOT_MEASURED


def test_use_when_lists_come_from_verdict_sides_and_exercised_features() -> None:
    won_by_raw = Verdict("throughput", "q", parts=["x"], favours="raw", reason="speed matters")
    tie = Verdict("latency", "q", parts=["x"], favours="neither", reason="")
    runs = pd.DataFrame.from_records([run("ack", ack=True)])
    lists = use_when([won_by_raw, tie], feature_matrix(runs))
    assert [item.text for item in lists["raw"]] == ["speed matters"]
    assert lists["raw"][0].link == "verdict-throughput"
    socketio = [item.text for item in lists["socketio"]]
    assert any("acknowledgements" in text and "ack" in text for text in socketio)
    assert not any("broadcast" in text for text in socketio)  # not exercised in this run


def test_horizontal_scaling_is_measured_by_runs_on_several_server_processes() -> None:
    runs = pd.DataFrame.from_records([
        run("scaleout", mode="fanout", server_workers=2),
        run("echo", server_workers=1),
    ])  # fmt: skip
    rows = {row.name: row for row in feature_matrix(runs)}
    assert rows["Horizontal scaling through a message queue"].measured_by == "scaleout"
