"""The report's part for instruction counts (the instructions mode's ``verdict`` and
``chart``, bench.modes.instructions): how much work each framework does per message, beside
what that work costs on this machine today (the throughput ratio of the same run)."""

from __future__ import annotations

import math

import pandas as pd

from bench.catalog import SERVERS
from bench.report import charts
from bench.report.verdict import Part, Verdict, _figure, _one_per_server, _where

QUESTION = "How much work does each framework do per message?"


def _cells(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty or "instructions_per_msg_median" not in summary.columns:
        return summary.iloc[0:0]
    rows = _where(summary, mode="instructions", payload_bytes=32, payload_kind="text")
    return _one_per_server(rows[rows["instructions_per_msg_median"].notna()])


def verdict(summary: pd.DataFrame) -> Verdict:
    found = Verdict("instructions", QUESTION, chart="chart-instructions")
    cells = _cells(summary)
    if cells.empty:
        return found  # unmeasured: left out of the report
    parts: list[Part] = [
        "User-space instructions the server executed per 32-byte echo, counted by callgrind "
        "(the same count in every run, whatever the host does): "
    ]
    for index, (_, row) in enumerate(cells.iterrows()):
        parts += [", " if index else "", f"{row['server']} ",
                  _figure(row, "instructions_per_msg_median", "")]  # fmt: skip
    parts.append(".")
    echo = _where(summary, scenario="echo", mode="closed", transport="websocket")
    for _, row in cells[cells["protocol"] == "socketio"].iterrows():
        raw = SERVERS[str(row["server"])].raw_counterpart if row["server"] in SERVERS else None
        column = f"instructions_per_msg_ratio_vs_{raw}_median"
        if raw is None or column not in row.index or math.isnan(float(row[column])):
            continue
        parts += [f" {row['server']} does ", _figure(row, column, "ratio"),
                  f" times the work per message of {raw}"]  # fmt: skip
        same = _where(echo, server=row["server"], loop=row["loop"])
        throughput = f"throughput_ratio_vs_{raw}_median"
        if not same.empty and throughput in same.columns:
            first = same.iloc[0]
            parts += [", and echoes ", _figure(first, throughput, "ratio"),
                      " times its messages per second in this run's closed loop (the kernel's "
                      "work per message, which both share, is in that ratio and not in the "
                      "count)"]  # fmt: skip
        parts.append(".")
    found.parts = parts
    found.favours = "neither"  # a cost to know, not a side to take
    return found


def chart(runs: pd.DataFrame, summary: pd.DataFrame) -> charts.Chart | None:
    cells = _cells(summary)
    if cells.empty:
        return None
    figure, axes = charts._new("Instructions per echo (callgrind, user space)")
    labels = [str(s) for s in cells["server"]]
    values = [float(v) for v in cells["instructions_per_msg_median"]]
    charts._bars(axes, labels, {"per echo": values}, [charts.colour(s) for s in labels])
    charts._log_axis(axes)
    axes.set_ylabel("instructions per message (log scale)")
    return charts.Chart(
        "chart-instructions",
        "Instructions per message",
        "User-space instructions each server executed per 32-byte echo, one in flight, counted "
        "under callgrind; the kernel's work and waiting are not in it.",
        charts._svg(figure),
    )
