"""``wsbench check`` and ``wsbench baseline``: the gate's file and terminal edges."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.analyze.summary import write_summary
from bench.analyze.tidy import load_meta
from bench.errors import UsageError
from bench.gate.check import GateResult, gate
from bench.gate.thresholds import load_thresholds
from bench.processes import repo_root

EXIT_GATE_FAILED = 1
BASELINE_FILES = ("runs.csv", "summary.csv", "meta.json", "histograms.jsonl")


def default_thresholds() -> Path:
    return repo_root() / "results" / "thresholds.toml"


def _summary(folder: Path) -> pd.DataFrame:
    if not (folder / "runs.csv").is_file():
        raise UsageError(f"{folder} holds no runs.csv")
    if not (folder / "summary.csv").is_file():
        write_summary(folder)
    summary = pd.read_csv(folder / "summary.csv")
    if summary.empty:
        raise UsageError(f"{folder}: summary.csv has no cells")
    return summary


def run_check(current: Path, baseline: Path, thresholds_path: Path | None) -> GateResult:
    thresholds = load_thresholds(thresholds_path or default_thresholds())
    return gate(
        _summary(baseline), load_meta(baseline), _summary(current), load_meta(current), thresholds
    )


# The table is the command's output (stdout); in a CI log it is not folded to 80 columns.
LOG_WIDTH = 200


def print_result(result: GateResult, console: Console | None = None) -> None:
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=LOG_WIDTH)
    table = Table(title="wsbench check", show_lines=False)
    for column in (
        "metric",
        "cell",
        "baseline",
        "current",
        "change",
        "interval",
        "threshold",
        "verdict",
    ):
        table.add_column(column, overflow="fold")
    for row in result.rows:
        change = "" if math.isnan(row.change_pct) else f"{row.change_pct:+.1f}%"
        verdict = f"[bold red]{row.verdict}[/bold red]" if row.failed else row.verdict
        table.add_row(
            row.metric,
            row.cell,
            row.baseline,
            row.current,
            change,
            row.interval,
            row.threshold,
            verdict + (f" ({row.reason})" if row.reason else ""),
        )
    console.print(table)
    console.print(f"comparison: {result.mode_note}")
    for note in result.notes:
        console.print(f"note: {note}")
    failed = sum(row.failed for row in result.rows)
    unjudged = sum(row.not_judged for row in result.rows)
    # A check beyond tolerance with nothing to judge it by passes, but is never hidden.
    aside = (
        f" ({unjudged} of them beyond tolerance but not judged: see their verdicts)"
        if unjudged
        else ""
    )
    if failed:
        console.print(
            f"[bold red]wsbench check: {failed} of {len(result.rows)} checks failed[/bold red]"
            + aside
        )
        # Repeated after the table, one line each: a log cut to its last lines still names them.
        for row in result.rows:
            if row.failed:
                change = "" if math.isnan(row.change_pct) else f" {row.change_pct:+.1f}%"
                console.print(
                    f"failed: {row.metric} {row.cell}: {row.baseline} -> {row.current}{change}"
                    f" (interval {row.interval}; threshold {row.threshold})"
                )
    else:
        console.print(f"wsbench check: all {len(result.rows)} checks passed{aside}")


def promote_baseline(folder: Path, destination: Path, force: bool) -> Path:
    """Copy a results folder's data files (not its logs or report) to ``destination``."""
    _summary(folder)  # refuses a folder without results, writes summary.csv if missing
    if destination.exists() and any(destination.iterdir()):
        if not force:
            raise UsageError(f"{destination} is not empty; use --force to replace the baseline")
        shutil.rmtree(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in BASELINE_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, destination / name)
    return destination
