"""compare.html: one self-contained page (no network fetch) showing two runs' per-cell deltas.

It is rendered from the frame ``bench.analyze.compare.deltas`` returns (which judges each
change) and the two folders' meta.json; the renderer only formats. The same inputs give the
same bytes: the page carries no time of its own making.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analyze.compare import SINGLE_PASS
from bench.analyze.summary import CELL_KEYS
from bench.report.html import TEMPLATES, format_cell

# Units of the deltas' metrics, for the table's metric column.
METRIC_UNITS = {
    "throughput": "msgs/s", "p50": "µs", "p99": "µs", "connects": "conns/s",
    "connect_p50": "µs", "connect_p99": "µs", "fanout_last_p99": "µs",
    "mem_kib_per_conn": "KiB/conn",
}  # fmt: skip
# Row highlight by verdict; other verdicts are not highlighted.
ROW_CLASSES = {"regression": "regression", "improvement": "improvement"}


def _side(record: Mapping[Hashable, Any], side: str) -> str:
    """One side of a deltas row as "median [low, high] n=repeats"."""
    median, low, high = (float(record[f"{side}_{f}"]) for f in ("median", "ci_low", "ci_high"))
    repeats = float(record.get(f"{side}_repeats", math.nan))
    shown = (
        f"{format_cell(median)} [no interval]"
        if math.isnan(low) or math.isnan(high)
        else f"{format_cell(median)} [{format_cell(low)}, {format_cell(high)}]"
    )
    return shown if math.isnan(repeats) else f"{shown} n={repeats:.0f}"


def cell_columns(table: pd.DataFrame) -> list[str]:
    """The cell keys the deltas frame has, in ``CELL_KEYS`` order."""
    return [key for key in CELL_KEYS if key in table.columns]


def comparison_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict of display strings per row of a ``deltas`` frame, in the frame's order:
    ``cells`` (values of ``cell_columns``), ``metric``, ``better`` ("higher"/"lower"),
    ``old`` and ``new`` ("median [low, high] n=repeats"), ``change`` (signed percent), ``verdict``
    and ``row_class`` ("regression", "improvement" or "")."""
    columns = cell_columns(table)
    rows = []
    for record in table.to_dict("records"):
        metric = str(record["metric"])
        unit = METRIC_UNITS.get(metric)
        change_pct = float(record["change_pct"])
        rows.append(
            {
                "cells": [format_cell(record[key]) for key in columns],
                "metric": f"{metric} ({unit})" if unit else metric,
                "better": str(record["better"]),
                "old": _side(record, "old"),
                "new": _side(record, "new"),
                "change": "" if math.isnan(change_pct) else f"{change_pct:+.1f}%",
                "verdict": str(record["verdict"]),
                "row_class": ROW_CLASSES.get(str(record["verdict"]), ""),
            }
        )
    return rows


def run_description(folder: str, meta: dict[str, Any]) -> dict[str, str]:
    """What the page says about one run, from its meta.json: the folder, when it started
    (``started_utc``, else the stamp's ``created_utc``), the harness commit and the command
    that reproduces it."""
    harness = meta.get("harness") or {}
    commit = str(harness.get("commit") or "unknown")
    if harness.get("dirty"):
        commit += " (uncommitted changes)"
    return {
        "folder": folder,
        "started": str(meta.get("started_utc") or meta.get("created_utc") or "unknown"),
        "commit": commit,
        "command": shlex.join(meta.get("command") or []) or "unknown",
    }


def render_compare_page(
    table: pd.DataFrame,
    old_run: dict[str, str],
    new_run: dict[str, str],
    differences: list[str],
    forced: bool,
) -> str:
    """The page for a ``deltas`` frame; ``old_run``/``new_run`` come from ``run_description``,
    ``differences`` from ``stamp_differences``; ``forced``: --force was given."""
    rows = comparison_rows(table)
    counts = {
        verdict: sum(row["verdict"] == verdict for row in rows)
        for verdict in ("regression", "improvement", "changed", "not distinguishable", SINGLE_PASS)
    }
    template = TEMPLATES.get_template("compare.html.j2")
    return template.render(
        title="wsbench comparison",
        old=old_run,
        new=new_run,
        differences=differences,
        forced=forced,
        columns=cell_columns(table),
        rows=rows,
        counts=counts,
    )


def write_compare_page(path: Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path
