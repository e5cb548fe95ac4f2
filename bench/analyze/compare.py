"""Comparing two results folders: environment stamps first, then cell by cell (pure).

Runs from different machines or software are not compared silently (pyperf's rule): the fields
of the stamp that move results must match, or the caller has to insist.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench import modes
from bench.analyze.summary import CELL_KEYS

# Stamp fields that move results: (section, key); a key of None compares the whole section.
RESULT_MOVING_FIELDS: list[tuple[str, str | None]] = [
    ("machine", "cpu_model"),
    ("machine", "cpu_count"),
    ("machine", "governor"),
    ("os", "kernel"),
    ("os", "libc"),
    ("python", "version"),
    ("python", "implementation"),
    ("packages", None),
    ("pinning", None),
    ("fairness", None),
]


def better_when(metric: str) -> str:
    """Which way a metric improves (its mode's declaration, bench.modes): rates up, latencies
    and memory down; "" when no mode declares it."""
    return modes.better_when().get(metric, "")


def compared_metrics(mode: str) -> list[str]:
    """The summary metrics compared for a cell of ``mode`` (its mode's, bench.modes)."""
    known = mode in modes.names()  # a summary from another harness version may have others
    metrics = (modes.get(mode).metrics if known else None) or modes.ECHO_METRICS
    return [m.prefix for m in metrics if m.compared]


def generator_hosts(meta: dict[str, Any]) -> list[str]:
    """The distinct machines a --cluster run's shards ran on, by what moves results (CPU,
    cores, Python, the generator's libraries), not by name or address; [] without shards."""
    hosts = ((meta.get("cluster") or {}).get("hosts") or {}).values()
    keys = ("cpu_model", "cpu_flags_sha256", "cpu_count", "python", "packages")
    return sorted({repr({k: h.get(k) for k in keys}) for h in hosts})


def field_differences(
    old: dict[str, Any], new: dict[str, Any], fields: list[tuple[str, str | None]]
) -> list[tuple[str, Any, Any]]:
    """``(section.key, old value, new value)`` for each of ``fields`` that differs; a key of
    None walks the whole section. A field one stamp lacks reads None there."""
    found = []
    for section, key in fields:
        old_section, new_section = old.get(section) or {}, new.get(section) or {}
        names = [key] if key is not None else sorted(set(old_section) | set(new_section))
        found += [
            (f"{section}.{name}", old_section.get(name), new_section.get(name))
            for name in names
            if old_section.get(name) != new_section.get(name)
        ]
    return found


def stamp_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable lines, one per result-moving field that differs (the shards' machines
    included)."""
    found = []
    if generator_hosts(old) != generator_hosts(new):
        found.append(
            f"cluster.hosts: {len(generator_hosts(old))} kind(s) of shard machine -> "
            f"{len(generator_hosts(new))}, or other CPUs or libraries"
        )
    found += [
        f"{name}: {before!r} -> {after!r}"
        for name, before, after in field_differences(old, new, RESULT_MOVING_FIELDS)
    ]
    return found


def _overlap(a_low: float, a_high: float, b_low: float, b_high: float) -> bool:
    if any(math.isnan(v) for v in (a_low, a_high, b_low, b_high)):
        return True
    return a_low <= b_high and b_low <= a_high


SINGLE_PASS = "one pass: not judged"


def verdict(
    metric: str,
    old_median: float,
    new_median: float,
    intervals_overlap: bool,
    fewest_repeats: float = math.inf,
) -> str:
    """The change's verdict: "not distinguishable" when the intervals overlap; otherwise
    "improvement" or "regression" by the metric's direction (``better_when``), or "changed"
    when the metric's direction is unknown or the medians give none. A side measured once has
    no interval (empty bounds), so nothing is judged from it."""
    if fewest_repeats < 2:
        return SINGLE_PASS
    if intervals_overlap:
        return "not distinguishable"
    better = better_when(metric)
    if not better or math.isnan(new_median - old_median) or new_median == old_median:
        return "changed"
    return "improvement" if (new_median > old_median) == (better == "higher") else "regression"


def deltas(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per cell present in both and metric: old and new medians with intervals, the
    relative change, whether the intervals overlap (no overlap: a change the repeats support;
    overlap: not distinguishable), the repeats behind each side, which way is better and the
    resulting ``verdict``."""
    # Summaries written before a cell key existed lack it; cells match on the keys both have.
    keys = [key for key in CELL_KEYS if key in old.columns and key in new.columns]
    joined = old.merge(new, on=keys, suffixes=("_old", "_new"))
    records = []
    for _, cell in joined.iterrows():
        for metric in compared_metrics(cell["mode"]):
            if f"{metric}_median_old" not in cell or f"{metric}_median_new" not in cell:
                continue  # a summary written before the metric existed
            old_median, new_median = cell[f"{metric}_median_old"], cell[f"{metric}_median_new"]
            change = (new_median - old_median) / old_median if old_median else math.nan
            overlap = _overlap(
                cell[f"{metric}_ci_low_old"],
                cell[f"{metric}_ci_high_old"],
                cell[f"{metric}_ci_low_new"],
                cell[f"{metric}_ci_high_new"],
            )
            records.append(
                {
                    **{key: cell[key] for key in keys},
                    "metric": metric,
                    "old_median": old_median,
                    "old_ci_low": cell[f"{metric}_ci_low_old"],
                    "old_ci_high": cell[f"{metric}_ci_high_old"],
                    "new_median": new_median,
                    "new_ci_low": cell[f"{metric}_ci_low_new"],
                    "new_ci_high": cell[f"{metric}_ci_high_new"],
                    "change_pct": round(100 * change, 2),
                    "intervals_overlap": overlap,
                    # Valid repeats behind each median: with one, the interval is that value.
                    "old_repeats": cell.get("repeats_old", math.nan),
                    "new_repeats": cell.get("repeats_new", math.nan),
                    "better": better_when(metric),
                    "verdict": verdict(
                        metric,
                        old_median,
                        new_median,
                        overlap,
                        min(cell.get("repeats_old", math.inf), cell.get("repeats_new", math.inf)),
                    ),
                }
            )
    return pd.DataFrame.from_records(records)
