"""report.html: one self-contained page (no network fetch) rendered from a results folder.

The page is built from the stored results alone (runs.csv, summary.csv, histograms.jsonl,
meta.json), so ``wsbench report DIR`` rebuilds it without re-running anything, byte for byte.
The statistics come from bench.analyze, the verdict from bench.report.verdict, the charts from
bench.report.charts; this module assembles the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from bench.analyze.tidy import load_meta, load_runs
from bench.catalog import raw_servers
from bench.report.charts import all_charts
from bench.report.features import feature_matrix, use_when
from bench.report.shipped import contract
from bench.report.shipped import table as shipped_table
from bench.report.verdict import Figure, Verdict, verdicts

TABLE_COLUMNS = [
    "run_id", "scenario", "server", "transport", "loop", "mode", "connections",
    "payload_bytes", "payload_kind", "ack", "target_rate", "repeat", "sent", "received",
    "errors", "throughput_msgs_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
    "server_cpu_pct", "msgs_per_cpu_s", "wire_bytes_up_per_msg", "wire_bytes_down_per_msg",
    "wire_frames_up_per_msg", "wire_frames_down_per_msg", "http_requests_per_msg",
    "target_conns_s", "connects_per_s", "connect_p50_us", "connect_p99_us",
    "server_cpu_us_per_conn", "server_rss_bytes", "client_cpu_pct", "client_bound", "status",
]  # fmt: skip


def table_columns() -> list[str]:
    """The summary table's columns, with a ratio column per raw server of the registry."""
    return [
        "scenario", "server", "transport", "loop", "mode", "connections", "payload_bytes",
        "payload_kind", "ack", "target_rate", "target_conns_s", "repeats", "throughput_median",
        "throughput_ci_low", "throughput_ci_high", "throughput_cv", "unstable", "p99_median",
        "p99_ci_low", "p99_ci_high",
        *(f"throughput_ratio_vs_{raw}_median" for raw in raw_servers()),
        "connects_median", "connects_ci_low", "connects_ci_high", "connect_p99_median",
        "connect_p99_ci_low", "connect_p99_ci_high",
        *(f"connects_ratio_vs_{raw}_median" for raw in raw_servers()),
        "client_bound_runs", "errors",
    ]  # fmt: skip


# The report's templates (report.html, compare.html): autoescaped, and strict about names.
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("bench.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def format_cell(value: Any) -> str:
    """How a number is written in the pages' tables."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def load_histograms(folder: Path) -> dict[str, list[str]]:
    """run_id -> its encoded latency histograms (one per generator process)."""
    path = folder / "histograms.jsonl"
    if not path.is_file():
        return {}
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            found[record["run_id"]] = list(record.get("latency_hist") or [])
    return found


def _verdict_view(verdict: Verdict) -> dict[str, Any]:
    parts = [
        {
            "text": part.text,
            "row": part.row,
            "column": part.column,
            "value": repr(part.value),
            "unit": part.unit,
        }
        if isinstance(part, Figure)
        else {"text": part}
        for part in verdict.parts
    ]
    return {
        "key": verdict.key,
        "question": verdict.question,
        "parts": parts,
        "chart": verdict.chart,
        "favours": verdict.favours,
        "partly": verdict.partly,
    }


def render(folder: Path) -> str:
    runs = load_runs(folder)
    meta = load_meta(folder)
    columns = [c for c in TABLE_COLUMNS if c in runs.columns]
    rows = [
        {"cells": [format_cell(v) for v in record], "flagged": bool(flag)}
        for record, flag in zip(
            runs[columns].itertuples(index=False, name=None),
            (runs["status"] != "ok") | (runs["errors"] > 0) | runs["client_bound"].astype(bool),
            strict=True,
        )
    ]
    summary_path = folder / "summary.csv"
    summary = pd.read_csv(summary_path) if summary_path.is_file() else pd.DataFrame()
    found = verdicts(summary) if not summary.empty else []
    # Every column a verdict quotes is in the page's summary table too.
    quoted = [f.column for v in found for f in v.figures]
    summary_columns = [c for c in dict.fromkeys(table_columns() + quoted) if c in summary.columns]
    summary_rows = [
        {"index": index, "cells": [format_cell(v) for v in record], "flagged": bool(flag)}
        for index, record, flag in zip(
            summary.index,
            summary[summary_columns].itertuples(index=False, name=None),
            summary["unstable"].astype(bool) if "unstable" in summary else [],
            strict=True,
        )
    ]
    features = feature_matrix(runs)
    # The charts draw the contract's cells (equalised, no TLS); "As shipped" has its table.
    charts = (
        all_charts(contract(runs), contract(summary), load_histograms(folder))
        if not summary.empty
        else []
    )
    chart_ids = {chart.id for chart in charts}
    views = [_verdict_view(v) for v in found]
    for view in views:  # link only to charts that are on the page
        if view["chart"] not in chart_ids:
            view["chart"] = None
    flags = {
        "client_bound": int(runs["client_bound"].astype(bool).sum()),
        "unstable": int(summary["unstable"].astype(bool).sum()) if "unstable" in summary else 0,
        "failed": int((runs["status"] != "ok").sum()),
        "with_errors": int((runs["errors"] > 0).sum()),
    }
    template = TEMPLATES.get_template("report.html.j2")
    return template.render(
        title=f"wsbench results, {meta.get('created_utc', 'unknown time')}",
        verdicts=views,
        use_when=use_when(found, features),
        features=features,
        charts=charts,
        flags=flags,
        columns=columns,
        rows=rows,
        summary_columns=summary_columns,
        summary_rows=summary_rows,
        meta=meta,
        fairness=json.dumps(meta.get("fairness", {}), indent=2),
        probes=json.dumps(meta.get("fairness_probes", {}), indent=2),
        environment=json.dumps(
            {k: meta.get(k) for k in ("machine", "os", "python", "packages", "pinning", "harness")},
            indent=2,
        ),
        command=" ".join(meta.get("command", [])),
        shipped_rows=shipped_table(summary) if not summary.empty else [],
    )


def write_report(folder: Path) -> Path:
    path = folder / "report.html"
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(render(folder))
    temporary.replace(path)
    return path
