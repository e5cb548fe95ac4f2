"""summary.csv: one row per cell over its repeats, with intervals and Socket.IO/raw ratios.

A cell is everything that defines a run except its repeat. Ratios pair each Socket.IO cell with
the raw server's cell that differs only in server and protocol (same loop, mode, payload...),
repeat by repeat, since repeats are interleaved (A B A B) and drift hits both members of a pair.
A cell measured once has no interval over repeats; when its pass was time-sliced with its raw
counterpart (bench.load.slices: both loaded in turn in the same rounds), its throughput ratio
is the pass's own with an interval over its rounds (resampled in pairs), and
``throughput_ratio_interval_over`` says which it was.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench import modes
from bench.analyze.stats import (
    coefficient_of_variation,
    median_interval,
    paired_ratios,
    ratio_of_sums_interval,
)
from bench.analyze.tidy import load_runs
from bench.catalog import raw_servers
from bench.errors import UsageError

CELL_KEYS = [
    "scenario", "server", "protocol", "transport", "loop", "client", "mode", "connections",
    "payload_bytes", "payload_kind", "target_rate", "target_conns_s", "inflight", "ack",
    "workers", "server_workers", "tier", "tls",
]  # fmt: skip
# What a Socket.IO cell and its raw counterpart share.
PAIR_KEYS = [k for k in CELL_KEYS if k not in ("server", "protocol")]
UNSTABLE_CV = 0.10
# Each mode's metrics (bench.modes; the echo ones by default: throughput, p50, p99, and
# "efficiency", messages per second of server CPU, which holds still when a shared host steals
# time and throughput does not; "efficiency_vs_generator", the generator's CPU over the
# server's for the same messages in the same window, which the regression gate compares across
# machines, where a calibration measured at another moment moved 50% in minutes: docs/gate.md).
# Columns carried into the summary as their median over valid repeats (``{column}_median``),
# where a run has them: the report's verdict quotes these, so every figure it states is a cell
# of summary.csv.
COMMON_MEDIAN_COLUMNS = [
    "msgs_per_cpu_s", "wire_bytes_up_per_msg", "wire_bytes_down_per_msg",
    "wire_frames_up_per_msg", "wire_frames_down_per_msg", "http_requests_per_msg",
    "connect_p50_us",
]  # fmt: skip


def median_columns() -> list[str]:
    """The common carried medians and each mode's own (bench.modes)."""
    return [*COMMON_MEDIAN_COLUMNS, *modes.median_columns()]


def mode_metrics(name: str) -> tuple[dict[str, str], dict[str, str], str]:
    """A mode's summary metrics and ratio metrics (prefix: column), and the column whose CV
    marks its cells unstable (an unknown mode, from an older or newer harness: the echo's)."""
    try:
        mode = modes.get(name)
    except UsageError:
        mode = modes.get("closed")
    metrics = mode.metrics or modes.ECHO_METRICS
    return (
        {m.prefix: m.column for m in metrics},
        {m.prefix: m.column for m in metrics if m.ratio},
        mode.headline,
    )


def _key(frame: pd.DataFrame) -> pd.Series:
    """A hashable text key per row (NaN-safe, unlike groupby on float columns)."""
    return _joined(frame, CELL_KEYS)


def _pair_key(frame: pd.DataFrame) -> pd.Series:
    return _joined(frame, PAIR_KEYS)


def _joined(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    return pd.Series(
        ["|".join(map(str, values)) for values in frame[columns].itertuples(index=False)],
        index=frame.index,
    )


def _by_repeat(rows: pd.DataFrame, column: str) -> dict[int, float]:
    return {int(r): float(v) for r, v in zip(rows["repeat"], rows[column], strict=True)}


def _interval_fields(prefix: str, values: list[float]) -> dict[str, Any]:
    interval = median_interval(values)
    return {
        f"{prefix}_median": interval.median,
        f"{prefix}_ci_low": interval.low,
        f"{prefix}_ci_high": interval.high,
    }


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Summarise valid runs (status ok); failed runs are counted, not averaged in."""
    if runs.empty:
        return pd.DataFrame()
    # Results written before a column existed lack it: it was not measured.
    metric_columns = {m.column for mode in modes.all_modes() for m in mode.metrics or ()}
    # (efficiency_vs_generator is computed below, from other columns.)
    optional = sorted((metric_columns | {"msgs_per_cpu_s"}) - {"efficiency_vs_generator"})
    if "server_workers" not in runs.columns:  # written before scale-out: one process
        runs = runs.assign(server_workers=1)
    if "tier" not in runs.columns:  # written before the tiers: the contract, no TLS
        runs = runs.assign(tier="equalised", tls=False)
    missing = [c for c in [*CELL_KEYS, *optional] if c not in runs.columns]
    runs = runs.assign(**{column: math.nan for column in missing})
    # (One copy, whole: a frame of many columns assigned one by one is fragmented.)
    runs = runs.copy().assign(
        _cell=_key(runs), _pair=_pair_key(runs),
        efficiency_vs_generator=_efficiency_vs_generator(runs),
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    for _, group in runs.groupby("_cell", sort=False):
        valid = group[group["status"] == "ok"]
        first = group.iloc[0]
        record: dict[str, Any] = {key: first[key] for key in CELL_KEYS}
        record["repeats"] = len(valid)
        record["failed_runs"] = int((group["status"] != "ok").sum())
        record["errors"] = int(group["errors"].sum())
        record["client_bound_runs"] = int(valid["client_bound"].astype(bool).sum())
        metrics, ratio_metrics, headline = mode_metrics(first["mode"])
        for prefix, column in metrics.items():
            record.update(_interval_fields(prefix, valid[column].tolist()))
        if first["mode"] in modes.names():
            extra = modes.get(first["mode"]).summarize
            if extra is not None:
                extra(valid, record)
        for column in median_columns():
            if column in valid.columns and valid[column].notna().any():
                record[f"{column}_median"] = float(valid[column].median())
        # The CV of the cell's headline figure: throughput for message runs, connections per
        # second for storms, the slope for memory.
        record["throughput_cv"] = coefficient_of_variation(valid[headline].tolist())
        record["unstable"] = bool(record["throughput_cv"] > UNSTABLE_CV)
        if first["protocol"] == "socketio":
            record.update(_ratios(valid, runs, first["_pair"], ratio_metrics))
            record["throughput_ratio_interval_over"] = _interval_basis(record, len(valid))
        records.append(record)
    return pd.DataFrame.from_records(records)


def _efficiency_vs_generator(runs: pd.DataFrame) -> pd.Series:
    """Per run: generator CPU over server CPU. Runs written before ``generator_cpu_pct``
    existed had it as ``client_cpu_pct`` when one generator process ran."""

    def column(name: str) -> pd.Series:
        if name in runs.columns:
            return runs[name].astype(float)
        return pd.Series(math.nan, index=runs.index)

    if "generator_cpu_pct" in runs.columns:
        generator = column("generator_cpu_pct")
    else:
        generator = column("client_cpu_pct").where(runs["workers"] == 1)
    server = column("server_cpu_pct")
    return (generator / server).where(server > 0)


def _ratios(
    socketio_rows: pd.DataFrame, runs: pd.DataFrame, pair: str, metrics: dict[str, str]
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for raw_server in raw_servers():
        raw_rows = runs[(runs["_pair"] == pair) & (runs["server"] == raw_server)]
        raw_rows = raw_rows[raw_rows["status"] == "ok"]
        for prefix, column in metrics.items():
            name = f"{prefix}_ratio_vs_{raw_server}"
            if raw_rows.empty:
                fields.update({f"{name}_median": math.nan, f"{name}_ci_low": math.nan,
                               f"{name}_ci_high": math.nan})  # fmt: skip
                fields[f"{name}_cv"] = math.nan
                continue
            ours, theirs = _by_repeat(socketio_rows, column), _by_repeat(raw_rows, column)
            common = sorted(set(ours) & set(theirs))
            ratios = paired_ratios([ours[r] for r in common], [theirs[r] for r in common])
            rounds = (
                _round_throughputs(socketio_rows, raw_rows, common[0])
                if prefix == "throughput" and len(common) == 1
                else None
            )
            if rounds is None:
                fields.update(_interval_fields(name, ratios))
                fields[f"{name}_cv"] = coefficient_of_variation(ratios)
                continue
            # One time-sliced pass: the pass's ratio, its interval over the rounds.
            interval = ratio_of_sums_interval(*rounds)
            fields[f"{name}_median"] = interval.median
            fields[f"{name}_ci_low"], fields[f"{name}_ci_high"] = interval.low, interval.high
            fields[f"{name}_cv"] = coefficient_of_variation(paired_ratios(*rounds))
    return fields


def _round_throughputs(
    ours: pd.DataFrame, theirs: pd.DataFrame, repeat: int
) -> tuple[list[float], list[float]] | None:
    """Both sides' throughput round by round of one time-sliced pass, or None when the two
    rows were not loaded in the same rounds (not sliced, not together, another round count)
    or the raw side echoed nothing in some round (no finite ratio for it: no interval, rather
    than one that leaves that round out)."""
    a = ours[ours["repeat"] == repeat].iloc[0]
    b = theirs[theirs["repeat"] == repeat].iloc[0]
    if "round_msgs" not in a.index or a.get("started_utc") != b.get("started_utc"):
        return None
    counts_a, counts_b = round_counts(a["round_msgs"]), round_counts(b["round_msgs"])
    if len(counts_a) < 2 or len(counts_a) != len(counts_b) or 0 in counts_b:
        return None
    # Per round: messages over that round's share of the measured time, on each side.
    slice_a = float(a["duration_s"]) / len(counts_a)
    slice_b = float(b["duration_s"]) / len(counts_b)
    return [n / slice_a for n in counts_a], [n / slice_b for n in counts_b]


def round_counts(value: Any) -> list[int]:
    """runs.csv's ``round_msgs`` (space-separated counts; empty or NaN when not sliced)."""
    return [int(v) for v in value.split()] if isinstance(value, str) else []


def _interval_basis(record: dict[str, Any], repeats: int) -> str:
    """What the throughput ratios' intervals are over: "repeats", "rounds" (of one sliced
    pass), or "" when no throughput ratio has an interval."""
    lows = [v for k, v in record.items() if k.startswith("throughput_ratio_vs_")
            and k.endswith("_ci_low") and not math.isnan(v)]  # fmt: skip
    if not lows:
        return ""
    return "repeats" if repeats >= 2 else "rounds"


def write_summary(folder: Path) -> Path:
    """Write summary.csv beside runs.csv (atomically: temporary file, then rename)."""
    path = folder / "summary.csv"
    temporary = path.with_suffix(".csv.tmp")
    summarize(load_runs(folder)).to_csv(temporary, index=False)
    temporary.replace(path)
    return path
