"""A throwaway mode defined outside ``bench/``, to show that a mode is its module and one
registration: each connection sends ``--burst`` messages at once, once, after the warm-up,
and every echo is counted (tests/integration/test_mode_registry.py registers it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.load.stacks import FAST
from bench.modes import Metric, Mode, Option, positive

if TYPE_CHECKING:
    from bench.runner import RunResult


def _columns(result: RunResult) -> dict[str, Any]:
    size = int(dict(result.spec.params)["burst"])
    echoes = sum(r.received for r in result.reports)
    return {
        "burst_size": size,
        "burst_echoes": echoes,
        "burst_whole": echoes == size * result.spec.connections,
    }


def _progress(record: Mapping[str, Any]) -> str:
    expected = record["connections"] * record["burst_size"]
    return f"{record['burst_echoes']:,} of {expected:,} burst echoes back"


def _verdict(summary: pd.DataFrame) -> Any:
    from bench.report.verdict import Verdict

    verdict = Verdict("burst", "Did every burst come back?")
    rows = summary[summary["mode"] == "burst"] if "mode" in summary.columns else summary
    if rows.empty:
        return verdict
    counts = ", ".join(f"{row.server} {row.burst_echoes_median:,.0f}" for row in rows.itertuples())
    verdict.parts.append(f"Burst echoes (median of repeats): {counts}.")
    verdict.favours = "neither"
    return verdict


BURST = Mode(
    name="burst",
    scenario="burst",
    help="burst (each connection sends --burst messages at once, once)",
    stack=(FAST, "tests.integration.burst_worker"),
    options=(
        Option(
            "burst",
            "--burst",
            "burst: messages each connection sends at once",
            lambda v, n: int(positive(v, n)),
            type=int,
            required=True,
        ),
    ),
    refuses=("inflight", "ack", "polling"),
    refusal="sends its burst over WebSocket without acks",
    throughput=False,
    columns=("burst_size", "burst_echoes", "burst_whole"),
    fill=_columns,
    metrics=(Metric("burst_echoes", "burst_echoes", "higher"),),
    headline="burst_echoes",
    median_columns=("burst_echoes",),
    time_s=lambda cell, servers: cell.warmup_s + cell.duration_s + 3.0,
    progress=_progress,
    verdict=_verdict,
)
