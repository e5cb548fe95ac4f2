"""docs/results-format.md lists exactly the columns the code writes to runs.csv and summary.csv,
so a column added to the code without a line of documentation fails here."""

from __future__ import annotations

import re

import pytest

from bench import modes
from bench.analyze import summary
from bench.analyze.tidy import load_runs
from bench.catalog import raw_servers
from bench.results import COLUMNS
from tests.conftest import REPO_ROOT

RESULTS_FORMAT = REPO_ROOT / "docs" / "results-format.md"
REFERENCE = REPO_ROOT / "results" / "reference"
# A table row whose first cell is a name in backticks: "| `p99_us` | ... |".
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
INTERVAL_SUFFIXES = ("median", "ci_low", "ci_high")
RATIO_SUFFIXES = (*INTERVAL_SUFFIXES, "cv")


def documented_columns(markdown: str, heading: str) -> list[str]:
    """The first-column names of the tables under ``heading`` (up to the next ``## ``)."""
    lines = markdown.splitlines()
    try:
        start = lines.index(heading) + 1
    except ValueError:
        pytest.fail(f"{RESULTS_FORMAT.name} has no heading {heading!r}")
    names = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if match := _ROW.match(line):
            names.append(match.group(1))
    return names


def summary_columns_from_code() -> set[str]:
    """Every column bench.analyze.summary can write, from its constants: the cell's key, the
    counts, each metric family's median and interval, the carried medians, the CV and the
    Socket.IO/raw ratios against every raw server."""
    columns = {*summary.CELL_KEYS, "repeats", "failed_runs", "errors", "client_bound_runs"}
    families, ratio_families = [], []
    for name in modes.names():
        metrics, ratio_metrics, _headline = summary.mode_metrics(name)
        families.append(metrics)
        ratio_families.append(ratio_metrics)
    for metrics in families:
        columns |= {f"{prefix}_{s}" for prefix in metrics for s in INTERVAL_SUFFIXES}
    columns |= {f"{column}_median" for column in summary.median_columns()}
    columns |= {"throughput_cv", "unstable"}
    for raw in raw_servers():
        for metrics in ratio_families:
            columns |= {
                f"{prefix}_ratio_vs_{raw}_{s}" for prefix in metrics for s in RATIO_SUFFIXES
            }
    return columns


def _differences(documented: list[str], expected: set[str]) -> str:
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    missing = sorted(expected - set(documented))
    extra = sorted(set(documented) - expected)
    return f"missing from the doc: {missing}; not written by the code: {extra}; twice: {repeated}"


def test_the_runs_table_lists_every_runs_csv_column() -> None:
    documented = documented_columns(RESULTS_FORMAT.read_text(), "## `runs.csv`")
    expected = set(COLUMNS)
    assert sorted(documented) == sorted(expected), _differences(documented, expected)


def test_the_summary_table_lists_every_summary_csv_column() -> None:
    """The constants name every family of columns; summarising the reference results catches
    a column written outside them. A documented ``<raw>`` stands for each raw server."""
    documented = [
        name.replace("<raw>", raw) if "<raw>" in name else name
        for name in documented_columns(RESULTS_FORMAT.read_text(), "## `summary.csv`")
        for raw in (raw_servers() if "<raw>" in name else [""])
    ]
    written = set(summary.summarize(load_runs(REFERENCE)).columns)
    expected = summary_columns_from_code() | written
    assert sorted(documented) == sorted(expected), _differences(documented, expected)
