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
