"""The result schema: one row per measured run, written to runs.csv as each cell completes.

Columns are versioned by ``SCHEMA_VERSION``; the encoded histograms behind each row go to
``histograms.jsonl`` so later analysis can merge them exactly instead of trusting percentiles.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import modes
from bench.calibration import MIN_HEADROOM, headroom
from bench.load.plan import WorkerReport
from bench.metrics import histogram as hist
from bench.runner import (
    CLIENT_BOUND_CPU_PCT,
    CLIENT_BOUND_GENERATOR_STEAL_PCT,
    CLIENT_BOUND_SEND_LAG_US,
    RunResult,
)

SCHEMA_VERSION = 1
WIRE_COUNTERS = (
    "wire_bytes_up", "wire_bytes_down", "wire_frames_up", "wire_frames_down", "http_requests",
)  # fmt: skip


def _per_worker(values: Sequence[object]) -> str:
    return " ".join(f"{k}:{v}" for k, v in enumerate(values)) if len(values) > 1 else ""


_COMMON_COLUMNS = [
    "run_id", "scenario", "server", "protocol", "transport", "loop", "client", "mode",
    "connections", "payload_bytes", "payload_kind", "target_rate", "repeat", "warmup_s",
    "duration_s", "sent", "received", "errors", "throughput_msgs_s", "p50_us", "p90_us",
    "p99_us", "p999_us", "max_us", "mean_us", "server_cpu_pct", "server_rss_bytes",
    "client_cpu_pct", "client_bound", "generator_headroom",
    # Beyond the required set:
    "status", "failure", "missing", "unexpected", "disconnects", "inflight", "ack", "workers",
    "cluster", "sent_per_worker", "received_per_worker", "client_cpu_pct_per_worker",
    "slice_s", "round_msgs", "msgs_per_cpu_s", "wire_bytes_up_per_msg", "wire_bytes_down_per_msg",
    "wire_frames_up_per_msg", "wire_frames_down_per_msg", "http_requests_per_msg",
    "server_loop_lag_p99_ms", "server_loop_lag_max_ms", "server_cpus_steal_pct",
    "generator_cpus_steal_pct", "generator_cpu_pct", "send_lag_p99_us",
    "connect_s", "connect_p50_us", "connect_p99_us", "connect_failures",
    "server_workers", "broker", "broker_version", "server_cpu_pct_per_worker", "broker_fault",
    "handicap_us", "handicap_loops", "extensions_negotiated", "extensions_offered_by_probe",
    "tier", "extensions_measured", "tls", "tls_version", "tls_cipher",
    "server_exit_status", "started_utc", "schema_version",
]  # fmt: skip


def columns() -> list[str]:
    """runs.csv's columns: the common ones, with each mode's own (as its module declares
    them, bench.modes) before the last three."""
    return [*_COMMON_COLUMNS[:-3], *modes.mode_columns(), *_COMMON_COLUMNS[-3:]]


# The registry's built-in modes' columns (a mode registered later adds its own: columns()).
COLUMNS = columns()


_round = modes.rounded


def messages_per_cpu_second(throughput_msgs_s: float, server_cpu_pct: float) -> float:
    """Messages echoed per second of server CPU: the cost per message, whatever share of a
    core the server got. NaN when the CPU was not measured or was zero."""
    if math.isnan(server_cpu_pct) or server_cpu_pct <= 0:
        return math.nan
    return throughput_msgs_s / (server_cpu_pct / 100)


def measured_extensions(reports: list[WorkerReport]) -> str:
    """What the measuring connections negotiated: each distinct agreement, " | " between them
    ("none" for connections that negotiated nothing beside others that did); "" when none
    did, or the stack cannot tell."""
    agreements = {a for r in reports for a in r.negotiated_extensions}
    if agreements <= {""}:
        return ""
    return " | ".join(sorted(a or "none" for a in agreements))


def per_message(reports: list[WorkerReport], counter: str) -> float:
    """A wire counter summed over workers, per message sent (warm-up included, as counted);
    NaN when a worker's stack could not count it."""
    values: list[int | None] = [getattr(r, counter) for r in reports]
    messages = sum(r.wire_messages for r in reports)
    if not values or any(v is None for v in values) or messages == 0:
        return math.nan
    return sum(v for v in values if v is not None) / messages


def round_messages(reports: list[WorkerReport]) -> str:
    """Echoes per measured round of a time-sliced run, summed over the workers, as
    space-separated counts ("" when the run was not sliced or the workers disagree on rounds)."""
    lengths = {len(r.round_received) for r in reports}
    if len(lengths) != 1 or 0 in lengths:
        return ""
    rounds = zip(*(r.round_received for r in reports), strict=True)
    return " ".join(str(sum(counts)) for counts in rounds)


def row(result: RunResult) -> dict[str, Any]:
    spec = result.spec
    latency = hist.summarize(result.merged("latency_hist")) if result.reports else None
    send_lag = hist.summarize(result.merged("send_lag_hist")) if result.reports else None
    connect = hist.summarize(result.merged("connect_hist")) if result.reports else None
    sent = sum(r.sent for r in result.reports)
    received = sum(r.received for r in result.reports)
    mode = modes.get(spec.mode)
    errors = sum(r.errors for r in result.reports)
    if mode.extra_errors is not None:
        errors += mode.extra_errors(result)
    nan = math.nan
    client_cpu = max((u.cpu_pct for u in result.client_usage), default=math.nan)
    # All generator processes together, over the same window as the server's CPU: the gate
    # compares the two across machines (bench.gate.check).
    generator_cpu = sum(u.cpu_pct for u in result.client_usage) if result.client_usage else math.nan
    send_lag_p99 = send_lag.p99_us if send_lag else math.nan
    # A connect storm's messages are one per connection, not a throughput; memory rows send
    # none; a reconnect storm's are a trickle to see who is connected.
    messages = result.reports and mode.throughput
    throughput = received / spec.duration_s if messages else nan
    server_cpu = result.server_usage.cpu_pct if result.server_usage else nan
    generator_headroom = (
        headroom(result.generator_ceiling_msgs_s, throughput, result.generator_processes)
        if result.reports
        else nan
    )
    client_bound = (
        (not math.isnan(client_cpu) and client_cpu >= CLIENT_BOUND_CPU_PCT)
        or (not mode.closed_loop and send_lag_p99 > CLIENT_BOUND_SEND_LAG_US)
        or generator_headroom < MIN_HEADROOM
        or (
            mode.closed_loop and result.generator_cpus_steal_pct >= CLIENT_BOUND_GENERATOR_STEAL_PCT
        )
    )
    # Every mode's columns, empty but for the row's own mode's.
    text = {c for m in modes.all_modes() for c in m.text_columns}
    own = {
        **{c: "" if c in text else nan for c in modes.mode_columns()},
        **mode.fill(result),
    }
    return {
        "run_id": result.run_id,
        "scenario": spec.scenario,
        "server": spec.server,
        "protocol": spec.protocol,
        "transport": spec.transport,
        "loop": spec.loop,
        "client": spec.client,
        "mode": spec.mode,
        "connections": spec.connections,
        "payload_bytes": spec.payload_bytes,
        "payload_kind": spec.payload_kind,
        "target_rate": mode.target_rate(spec, result),
        "repeat": spec.repeat,
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "slice_s": spec.slice_s,
        "round_msgs": round_messages(result.reports) if mode.closed_loop else "",
        "sent": sent,
        "received": received,
        "errors": errors,
        "throughput_msgs_s": _round(throughput),
        "p50_us": latency.p50_us if latency else nan,
        "p90_us": latency.p90_us if latency else nan,
        "p99_us": latency.p99_us if latency else nan,
        "p999_us": latency.p999_us if latency else nan,
        "max_us": latency.max_us if latency else nan,
        "mean_us": _round(latency.mean_us) if latency else nan,
        "server_cpu_pct": _round(server_cpu),
        "msgs_per_cpu_s": _round(messages_per_cpu_second(throughput, server_cpu)),
        **{
            f"{counter}_per_msg": _round(per_message(result.reports, counter), 2)
            for counter in WIRE_COUNTERS
        },
        "server_rss_bytes": result.server_usage.rss_max_bytes if result.server_usage else nan,
        "server_loop_lag_p99_ms": _round(result.server_loop_lag_p99_ms, 3),
        "server_loop_lag_max_ms": _round(result.server_loop_lag_max_ms, 3),
        "server_cpus_steal_pct": _round(result.server_cpus_steal_pct, 2),
        "generator_cpus_steal_pct": _round(result.generator_cpus_steal_pct, 2),
        "client_cpu_pct": _round(client_cpu),
        "generator_cpu_pct": _round(generator_cpu),
        "client_bound": client_bound,
        "generator_headroom": _round(generator_headroom, 2),
        "status": result.status,
        "failure": result.failure,
        "missing": sum(r.missing for r in result.reports),
        "unexpected": sum(r.unexpected for r in result.reports),
        "disconnects": sum(r.disconnects for r in result.reports),
        "inflight": spec.inflight if mode.closed_loop else nan,
        "ack": spec.ack,
        "workers": spec.workers,
        "cluster": spec.cluster,
        # Each generator process's (or Dask shard's) own counts, which the row's sum: the
        # merging shows in the row itself ("index:count", as server_cpu_pct_per_worker).
        "sent_per_worker": _per_worker([r.sent for r in result.reports]),
        "received_per_worker": _per_worker([r.received for r in result.reports]),
        "client_cpu_pct_per_worker": _per_worker([f"{u.cpu_pct:.1f}" for u in result.client_usage]),
        "handicap_us": spec.handicap_us,
        "handicap_loops": spec.handicap_loops,
        "send_lag_p99_us": send_lag_p99 if not mode.closed_loop else nan,
        "connect_s": _round(result.connect_s, 4),
        "connect_p50_us": connect.p50_us if connect else nan,
        "connect_p99_us": connect.p99_us if connect else nan,
        "connect_failures": sum(r.connect_failures for r in result.reports),
        "server_workers": spec.server_workers,
        "broker": spec.broker,
        "broker_version": result.broker_version,
        "server_cpu_pct_per_worker": " ".join(
            f"{k}:{u.cpu_pct:.1f}" for k, u in enumerate(result.server_worker_usage)
        )
        if len(result.server_worker_usage) > 1
        else "",
        "broker_fault": spec.broker_fault,
        **own,
        "extensions_negotiated": result.probe.extensions_negotiated if result.probe else "",
        "extensions_offered_by_probe": (
            result.probe.extensions_offered_by_probe if result.probe else ""
        ),
        "tier": spec.tier,
        "extensions_measured": measured_extensions(result.reports),
        "tls": spec.tls or (spec.target_url or "").startswith(("wss://", "https://")),
        "tls_version": next((r.tls_version for r in result.reports if r.tls_version), ""),
        "tls_cipher": next((r.tls_cipher for r in result.reports if r.tls_cipher), ""),
        "server_exit_status": result.server_exit_status,
        "started_utc": result.started_utc,
        "schema_version": SCHEMA_VERSION,
    }


class ResultsWriter:
    """Appends each completed cell to runs.csv and histograms.jsonl, flushed at once, so an
    interrupted suite leaves a valid CSV of every cell that finished."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.csv_path = out_dir / "runs.csv"
        self.histograms_path = out_dir / "histograms.jsonl"
        self.rows: list[dict[str, Any]] = []

    def append(self, result: RunResult) -> dict[str, Any]:
        record = row(result)
        new_file = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns())
            if new_file:
                writer.writeheader()
            writer.writerow(record)
            stream.flush()
            os.fsync(stream.fileno())
        with self.histograms_path.open("a") as stream:
            stream.write(
                json.dumps(
                    {
                        "run_id": result.run_id,
                        "latency_hist": [r.latency_hist for r in result.reports],
                        "send_lag_hist": [r.send_lag_hist for r in result.reports],
                        "connect_hist": [r.connect_hist for r in result.reports],
                        **{
                            name: [getattr(r, name) for r in result.reports]
                            for name in modes.get(result.spec.mode).histograms
                        },
                        "error_samples": [s for r in result.reports for s in r.error_samples],
                        "capacity_probes": result.capacity_probes,
                    }
                )
                + "\n"
            )
        self.rows.append(record)
        return record


def write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)
