"""Charts: one colour per server everywhere, servers outside the catalog included."""

from __future__ import annotations

import pandas as pd

from bench.catalog import SERVERS
from bench.report.charts import _servers, colour, connection_throughput


def test_catalog_servers_keep_their_colours_and_others_get_a_stable_one() -> None:
    assert colour("websockets") == SERVERS["websockets"].colour
    assert len({info.colour for info in SERVERS.values()}) == len(SERVERS)  # all distinct
    assert colour("mine") == colour("mine")
    assert colour("mine") not in {info.colour for info in SERVERS.values()}


def test_a_target_label_is_drawn_after_the_catalog_servers() -> None:
    frame = pd.DataFrame({"server": ["mine", "aiohttp", "websockets"]})
    assert _servers(frame) == ["websockets", "aiohttp", "mine"]


def test_a_chart_of_a_target_run_has_its_label() -> None:
    summary = pd.DataFrame([{
        "scenario": "echo", "server": "mine", "transport": "websocket", "loop": "external",
        "client": "fast", "mode": "closed", "connections": 10, "payload_bytes": 32,
        "payload_kind": "text", "ack": False, "repeats": 3, "throughput_median": 1000.0,
        "throughput_ci_low": 900.0, "throughput_ci_high": 1100.0,
    }])  # fmt: skip
    chart = connection_throughput(summary)
    assert chart is not None and ">mine<" in chart.svg


def test_the_scaleout_chart_sets_local_beside_remote_latency_per_server() -> None:
    from bench.report.charts import scaleout

    def cell(server: str, local_us: float, remote_us: float) -> dict[str, object]:
        return {"scenario": "scaleout", "server": server, "transport": "websocket",
                "loop": "uvloop", "mode": "fanout", "repeats": 1, "server_workers": 2,
                "fanout_local_p50_us_median": local_us,
                "fanout_remote_p50_us_median": remote_us}  # fmt: skip

    chart = scaleout(pd.DataFrame([cell("websockets", 12_000.0, 32_000.0),
                                   cell("socketio-aiohttp", 530_000.0, 780_000.0)]))  # fmt: skip
    assert chart is not None and chart.id == "chart-scaleout"
    assert ">websockets<" in chart.svg and ">socketio-aiohttp<" in chart.svg
    assert scaleout(pd.DataFrame([{"scenario": "echo", "server": "aiohttp"}])) is None
