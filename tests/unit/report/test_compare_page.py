from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analyze.compare import deltas
from bench.report.compare_page import (
    cell_columns,
    comparison_rows,
    render_compare_page,
    run_description,
    write_compare_page,
)

Interval = tuple[float, float, float]  # low, median, high


def summary_cell(server: str, throughput: Interval, p99: Interval, mode: str = "closed") -> dict:
    cell: dict[str, Any] = {"scenario": "echo", "server": server, "protocol": "raw",
            "transport": "websocket", "loop": "uvloop", "client": "fast", "mode": mode,
            "connections": 10, "payload_bytes": 32, "payload_kind": "text",
            "target_rate": math.nan, "inflight": 1, "ack": False, "workers": 1,
            "repeats": 3}  # fmt: skip
    for metric, (low, median, high) in (("throughput", throughput), ("p50", (90, 100, 110)),
                                        ("p99", p99)):  # fmt: skip
        cell.update(
            {f"{metric}_median": median, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
        )
    return cell


def connect_cell(server: str, connects: Interval, connect_p99: Interval) -> dict:
    cell = summary_cell(server, (0, 0, 0), (0, 0, 0), mode="connect")
    for metric, (low, median, high) in (("connects", connects), ("connect_p50", (5, 6, 7)),
                                        ("connect_p99", connect_p99)):  # fmt: skip
        cell.update(
            {f"{metric}_median": median, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
        )
    return cell


def example_deltas() -> pd.DataFrame:
    """aiohttp: throughput down (regression), p99 down (improvement); websockets: throughput
    up (improvement), p99 up (regression); connect storm: connects up, set-up p99 overlapping."""
    old = pd.DataFrame(
        [
            summary_cell("aiohttp", (900, 1000, 1100), (190, 200, 210)),
            summary_cell("websockets", (900, 1000, 1100), (190, 200, 210)),
            connect_cell("socketio-aiohttp", (400, 450, 500), (900, 1000, 1100)),
        ]
    )
    new = pd.DataFrame(
        [
            summary_cell("aiohttp", (600, 700, 800), (90, 100, 110)),
            summary_cell("websockets", (1200, 1300, 1400), (290, 300, 310)),
            connect_cell("socketio-aiohttp", (600, 650, 700), (1000, 1050, 1150)),
        ]
    )
    return deltas(old, new)


RUN_OLD = {"folder": "results/old", "started": "2026-11-20T10:00:00+00:00", "commit": "abc",
           "command": "wsbench run --suite quick"}  # fmt: skip
RUN_NEW = {"folder": "results/new", "started": "2026-11-21T10:00:00+00:00", "commit": "def",
           "command": "wsbench run --suite quick"}  # fmt: skip


def by_server_and_metric(rows: list[dict[str, Any]], columns: list[str]) -> dict[tuple, dict]:
    server = columns.index("server")
    return {(row["cells"][server], row["metric"].split(" ")[0]): row for row in rows}


def test_rows_judge_direction_by_metric() -> None:
    table = example_deltas()
    rows = by_server_and_metric(comparison_rows(table), cell_columns(table))
    throughput_down = rows[("aiohttp", "throughput")]
    assert throughput_down["verdict"] == "regression"
    assert throughput_down["row_class"] == "regression"
    assert throughput_down["better"] == "higher"
    assert throughput_down["change"] == "-30.0%"
    assert throughput_down["old"] == "1,000 [900, 1,100] n=3"
    assert throughput_down["new"] == "700 [600, 800] n=3"
    assert throughput_down["metric"] == "throughput (msgs/s)"
    assert rows[("aiohttp", "p99")]["verdict"] == "improvement"
    assert rows[("aiohttp", "p99")]["row_class"] == "improvement"
    assert rows[("aiohttp", "p99")]["better"] == "lower"
    assert rows[("websockets", "throughput")]["verdict"] == "improvement"
    assert rows[("websockets", "p99")]["verdict"] == "regression"
    assert rows[("socketio-aiohttp", "connects")]["verdict"] == "improvement"
    assert rows[("socketio-aiohttp", "connect_p99")]["better"] == "lower"


def test_overlapping_intervals_are_not_distinguishable_whatever_the_change() -> None:
    table = example_deltas()
    rows = by_server_and_metric(comparison_rows(table), cell_columns(table))
    for server, metric in (("aiohttp", "p50"), ("socketio-aiohttp", "connect_p99")):
        row = rows[(server, metric)]
        assert row["verdict"] == "not distinguishable"
        assert row["row_class"] == ""
    assert rows[("socketio-aiohttp", "connect_p99")]["change"] == "+5.0%"


def test_a_missing_interval_and_the_repeats_are_shown() -> None:
    old = pd.DataFrame([summary_cell("aiohttp", (math.nan, 1000, math.nan), (190, 200, 210))])
    new = pd.DataFrame([{**summary_cell("aiohttp", (2000, 2000, 2000), (190, 200, 210)),
                         "repeats": 1}])  # fmt: skip
    row = comparison_rows(deltas(old, new))[0]
    assert row["old"] == "1,000 [no interval] n=3"
    assert row["new"] == "2,000 [2,000, 2,000] n=1"
    assert row["verdict"] == "one pass: not judged"  # n=1: its "interval" is its one value
    without_repeats = deltas(old.drop(columns="repeats"), new.drop(columns="repeats"))
    assert comparison_rows(without_repeats)[0]["old"] == "1,000 [no interval]"


def test_run_description_prefers_started_utc_and_quotes_the_command() -> None:
    meta = {"created_utc": "2026-11-20T10:00:00+00:00", "command": ["wsbench", "run", "a b"],
            "harness": {"commit": "abc123", "dirty": True}}  # fmt: skip
    described = run_description("results/x", meta)
    assert described == {
        "folder": "results/x",
        "started": "2026-11-20T10:00:00+00:00",
        "commit": "abc123 (uncommitted changes)",
        "command": "wsbench run 'a b'",
    }
    started = run_description("x", {**meta, "started_utc": "2026-11-20T09:59:00+00:00"})
    assert started["started"] == "2026-11-20T09:59:00+00:00"
    assert run_description("x", {})["command"] == "unknown"


def table_rows(page: str) -> list[list[str]]:
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    return [
        [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)
    ]


def test_page_has_one_table_row_per_cell_and_metric() -> None:
    table = example_deltas()
    page = render_compare_page(table, RUN_OLD, RUN_NEW, [], forced=False)
    expected = [
        [*row["cells"], row["metric"], row["better"], row["old"], row["new"], row["change"],
         row["verdict"]]
        for row in comparison_rows(table)
    ]  # fmt: skip
    assert len(expected) == len(table) == 9
    assert table_rows(page) == expected
    assert page.count('<tr class="regression">') == 2
    assert page.count('<tr class="improvement">') == 3
    for column in ("scenario", "server", "transport", "loop", "mode", "payload_bytes"):
        assert f'<th class="key">{column}</th>' in page
    for run in (RUN_OLD, RUN_NEW):
        for value in run.values():
            assert value in page
    assert "<h1>wsbench comparison</h1>" in page
    assert "environments differ" not in page


def test_stamp_differences_are_a_prominent_warning() -> None:
    differences = ["os.kernel: '6.1' -> '6.8'", "packages.aiohttp: '3.14.5' -> '3.11.0'"]
    page = render_compare_page(example_deltas(), RUN_OLD, RUN_NEW, differences, forced=True)
    warning = page[page.index('<div class="warning">') : page.index("</div>")]
    assert "the environments differ" in warning
    assert "<code>--force</code> was given" in warning
    for line in differences:
        assert f"<li><code>{line}</code></li>" in html.unescape(warning)
    assert page.index('<div class="warning">') < page.index("<table>")


def test_page_fetches_nothing_and_escapes_its_inputs() -> None:
    run = {**RUN_NEW, "command": "wsbench run <script>alert(1)</script>"}
    page = render_compare_page(example_deltas(), RUN_OLD, run, ["x: 1 -> 2"], forced=True)
    fetches = ("http://", "https://", "<script", "<link", "src=", "href=", "url(", "@import")
    assert [reference for reference in fetches if reference in page] == []
    assert "&lt;script&gt;" in page


def test_no_common_cells_gives_a_page_that_says_so() -> None:
    page = render_compare_page(pd.DataFrame(), RUN_OLD, RUN_NEW, [], forced=False)
    assert "No cell appears in both runs." in page and "<tbody>" not in page


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first = render_compare_page(example_deltas(), RUN_OLD, RUN_NEW, ["a: 1 -> 2"], forced=True)
    second = render_compare_page(example_deltas(), {**RUN_OLD}, {**RUN_NEW}, ["a: 1 -> 2"], True)
    assert first.encode() == second.encode()
    path = write_compare_page(tmp_path / "compare.html", first)
    write_compare_page(path, second)
    assert path.read_bytes() == first.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.html"]
