"""The result schema: one row per measured run, written to runs.csv as each cell completes.

Columns are versioned by ``SCHEMA_VERSION``; the encoded histograms behind each row go to
``histograms.jsonl`` so later analysis can merge them exactly instead of trusting percentiles.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from bench.analyze import broker_fault
from bench.analyze.stats import fit_line
from bench.calibration import MIN_HEADROOM, headroom
from bench.load.fanout import summed_per_worker
from bench.load.plan import WorkerReport
from bench.load.reconnect import BACKOFF, Recovery, recovery
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

COLUMNS = [
    "run_id", "scenario", "server", "protocol", "transport", "loop", "client", "mode",
    "connections", "payload_bytes", "payload_kind", "target_rate", "repeat", "warmup_s",
    "duration_s", "sent", "received", "errors", "throughput_msgs_s", "p50_us", "p90_us",
    "p99_us", "p999_us", "max_us", "mean_us", "server_cpu_pct", "server_rss_bytes",
    "client_cpu_pct", "client_bound", "generator_headroom",
    # Beyond the required set:
    "status", "failure", "missing", "unexpected", "disconnects", "inflight", "ack", "workers",
    "slice_s", "round_msgs", "msgs_per_cpu_s", "wire_bytes_up_per_msg", "wire_bytes_down_per_msg",
    "wire_frames_up_per_msg", "wire_frames_down_per_msg", "http_requests_per_msg",
    "server_loop_lag_p99_ms", "server_loop_lag_max_ms", "server_cpus_steal_pct",
    "generator_cpus_steal_pct", "generator_cpu_pct", "send_lag_p99_us", "slo_p99_ms",
    "capacity_msgs_s", "connect_s", "connect_p50_us", "connect_p99_us", "target_conns_s",
    "connects_per_s", "connect_failures", "server_cpu_us_per_conn", "recipients",
    "fanout_p50_us", "fanout_p99_us", "fanout_first_p99_us", "fanout_median_p99_us",
    "fanout_last_p99_us", "delivered", "duplicated", "out_of_order", "slow_share",
    "slow_receivers", "slow_delivered", "slow_missing", "slow_dropped",
    "server_rss_growth_bytes", "mem_kib_per_conn",
    "mem_kib_per_conn_ci_low", "mem_kib_per_conn_ci_high", "mem_r2", "mem_intercept_mib",
    "server_workers", "broker", "broker_version", "server_cpu_pct_per_worker",
    "publisher_worker", "fanout_local_p50_us", "fanout_local_p99_us", "fanout_remote_p50_us",
    "fanout_remote_p99_us", "receivers_per_worker", "delivered_per_worker",
    "missing_per_worker", "duplicated_per_worker", "broker_fault", "broker_down_s",
    "broker_recovery_s", "lost_broadcasts", "recovery_per_worker", "exited_workers",
    "broker_fault_note",
    "mem_uss_kib_per_conn", "mem_points", "recovery_p50_s", "recovery_p99_s", "recovery_all_s",
    "recovered_clients", "lost", "backoff", "handicap_us",
    "extensions_negotiated", "extensions_offered_by_probe", "server_exit_status", "started_utc",
    "schema_version",
]  # fmt: skip


def _round(value: float, digits: int = 1) -> float:
    return value if math.isnan(value) else round(value, digits)


def messages_per_cpu_second(throughput_msgs_s: float, server_cpu_pct: float) -> float:
    """Messages echoed per second of server CPU: the cost per message, whatever share of a
    core the server got. NaN when the CPU was not measured or was zero."""
    if math.isnan(server_cpu_pct) or server_cpu_pct <= 0:
        return math.nan
    return throughput_msgs_s / (server_cpu_pct / 100)


def connects_per_second(result: RunResult) -> float:
    """Connections set up per second over a storm: from the start signal until its last
    attempt finished (NaN when nothing was timed)."""
    opened = sum(r.connections for r in result.reports)
    if not result.reports or not result.connect_s > 0:
        return math.nan
    return opened / result.connect_s


def server_cpu_us_per_connection(result: RunResult) -> float:
    """The server's CPU time per connection of a storm, over its life (set-up, one echo,
    close), in µs; NaN when not measured."""
    opened = sum(r.connections for r in result.reports)
    if opened == 0:
        return math.nan
    return result.server_storm_cpu_s / opened * 1e6


def reconnect_recovery(result: RunResult) -> Recovery:
    return recovery(result.killed_ns, [t for r in result.reports for t in r.recovered_ns])


def reconnect_fields(result: RunResult) -> dict[str, Any]:
    """Reconnect rows: seconds from the kill until half, 99% and all clients exchanged
    messages again, how many did, the messages lost meanwhile, and the backoff in force."""
    if result.spec.mode != "reconnect" or not result.reports:
        names = ("recovery_p50_s", "recovery_p99_s", "recovery_all_s", "recovered_clients",
                 "lost")  # fmt: skip
        return {**dict.fromkeys(names, math.nan), "backoff": ""}
    found = reconnect_recovery(result)
    return {
        "recovery_p50_s": _round(found.p50_s, 3),
        "recovery_p99_s": _round(found.p99_s, 3),
        "recovery_all_s": _round(found.all_s, 3),
        "recovered_clients": found.recovered,
        "lost": sum(r.lost for r in result.reports),
        "backoff": BACKOFF.describe(),
    }


def memory_fields(result: RunResult) -> dict[str, Any]:
    """Memory rows: the slope of the server's RSS (and USS) over connections held, in KiB per
    connection, with its 95% interval, R², the intercept, and the points themselves."""
    points = result.memory_points
    if result.spec.mode != "memory" or not points:
        names = ("mem_kib_per_conn", "mem_kib_per_conn_ci_low", "mem_kib_per_conn_ci_high",
                 "mem_r2", "mem_intercept_mib", "mem_uss_kib_per_conn")  # fmt: skip
        return {**dict.fromkeys(names, math.nan), "mem_points": ""}
    connections = [p[0] for p in points]
    rss = fit_line(connections, [p[1] / 1024 for p in points])
    uss = fit_line(connections, [p[2] / 1024 for p in points])
    return {
        "mem_kib_per_conn": _round(rss.slope, 3),
        "mem_kib_per_conn_ci_low": _round(rss.slope_ci_low, 3),
        "mem_kib_per_conn_ci_high": _round(rss.slope_ci_high, 3),
        "mem_r2": _round(rss.r2, 4),
        "mem_intercept_mib": _round(rss.intercept / 1024, 2),
        "mem_uss_kib_per_conn": _round(uss.slope, 3),
        # connections, RSS bytes, USS bytes per step
        "mem_points": json.dumps([[c, r, u] for c, r, u in points]),
    }


def fanout_fields(result: RunResult, deliveries: hist.LatencySummary | None) -> dict[str, Any]:
    """Fan-out rows: receivers, delivery latency (every delivery, and per message its first,
    median and last receiver's), and the exact delivery counts; NaN for other rows."""
    names = ("recipients", "fanout_p50_us", "fanout_p99_us", "fanout_first_p99_us",
             "fanout_median_p99_us", "fanout_last_p99_us", "delivered", "duplicated",
             "out_of_order", "slow_share", "slow_receivers", "slow_delivered", "slow_missing",
             "slow_dropped", "server_rss_growth_bytes")  # fmt: skip
    if result.spec.mode != "fanout" or not result.reports or deliveries is None:
        return dict.fromkeys(names, math.nan)

    def p99(attribute: str) -> float:
        return hist.summarize(result.merged(attribute)).p99_us

    return {
        "recipients": sum(r.recipients for r in result.reports),
        "fanout_p50_us": deliveries.p50_us,
        "fanout_p99_us": deliveries.p99_us,
        "fanout_first_p99_us": p99("fanout_first_hist"),
        "fanout_median_p99_us": p99("fanout_median_hist"),
        "fanout_last_p99_us": p99("fanout_last_hist"),
        "delivered": sum(r.received for r in result.reports),
        "duplicated": sum(r.duplicated for r in result.reports),
        "out_of_order": sum(r.out_of_order for r in result.reports),
        # Slow consumers: the figures above are the fast receivers'; these, the slow ones'.
        "slow_share": result.spec.slow_share,
        "slow_receivers": sum(r.slow_receivers for r in result.reports),
        "slow_delivered": sum(r.slow_delivered for r in result.reports),
        "slow_missing": sum(r.slow_missing for r in result.reports),
        "slow_dropped": sum(r.slow_dropped for r in result.reports),
        "server_rss_growth_bytes": result.server_rss_growth_bytes,
    }


SCALEOUT_COLUMNS = (
    "publisher_worker", "fanout_local_p50_us", "fanout_local_p99_us", "fanout_remote_p50_us",
    "fanout_remote_p99_us", "receivers_per_worker", "delivered_per_worker",
    "missing_per_worker", "duplicated_per_worker",
)  # fmt: skip


def per_worker_text(counts: dict[str, int]) -> str:
    """``{"0": 500, "1": 498}`` as ``0:500 1:498`` (a server process's id, then its count)."""
    return " ".join(f"{worker}:{count}" for worker, count in sorted(counts.items(), key=_by_id))


def _by_id(item: tuple[str, int]) -> int:
    return int(item[0])


def scaleout_fields(result: RunResult) -> dict[str, Any]:
    """Scale-out fan-out rows (several server processes): where the publisher was, the delivery
    latency on its process (local) and across the broker (remote), and the counts per process.
    Empty (NaN, "") elsewhere."""
    reports = [r for r in result.reports if r.publisher_worker >= 0]
    if result.spec.mode != "fanout" or not reports:
        return {name: ("" if name.endswith("_per_worker") else math.nan)
                for name in SCALEOUT_COLUMNS}  # fmt: skip

    def percentiles(attribute: str) -> tuple[float, float]:
        merged = hist.merge(getattr(r, attribute) for r in reports)
        if merged.get_total_count() == 0:
            return math.nan, math.nan
        found = hist.summarize(merged)
        return found.p50_us, found.p99_us

    local_p50, local_p99 = percentiles("fanout_local_hist")
    remote_p50, remote_p99 = percentiles("fanout_remote_hist")
    return {
        "publisher_worker": reports[0].publisher_worker,
        "fanout_local_p50_us": local_p50,
        "fanout_local_p99_us": local_p99,
        "fanout_remote_p50_us": remote_p50,
        "fanout_remote_p99_us": remote_p99,
        "receivers_per_worker": per_worker_text(
            summed_per_worker([r.worker_receivers for r in reports])
        ),
        "delivered_per_worker": per_worker_text(
            summed_per_worker([r.worker_delivered for r in reports])
        ),
        "missing_per_worker": per_worker_text(
            summed_per_worker([r.worker_missing for r in reports])
        ),
        "duplicated_per_worker": per_worker_text(
            summed_per_worker([r.worker_duplicated for r in reports])
        ),
    }


def broker_fault_fields(result: RunResult) -> dict[str, Any]:
    """Broker-fault rows: how long the broker was gone, what was lost, and when each server
    process's receivers got broadcasts again (bench.analyze.broker_fault); empty elsewhere."""
    reports = [r for r in result.reports if r.publisher_worker >= 0]
    exited = " ".join(str(k) for k in sorted(result.exited_workers))
    if not result.spec.broker_fault or not reports or not result.broker_restarted_ns:
        return {"broker_down_s": math.nan, "broker_recovery_s": math.nan,
                "lost_broadcasts": math.nan, "recovery_per_worker": "",
                "exited_workers": exited, "broker_fault_note": ""}  # fmt: skip
    (report,) = reports  # fan-out runs one generator worker
    fault = broker_fault.analyse(
        report.message_intended_ns,
        {int(w): row for w, row in report.worker_message_delivered.items()},
        {int(w): n for w, n in report.worker_receivers.items()},
        result.broker_restarted_ns,
    )
    return {
        "broker_down_s": _round((result.broker_restarted_ns - result.broker_killed_ns) / 1e9, 3),
        "broker_recovery_s": _round(fault.recovery_s, 3),
        "lost_broadcasts": fault.lost_broadcasts,
        "recovery_per_worker": " ".join(
            f"{w}:{'never' if math.isnan(t) else f'{t:.3f}'}" for w, t in fault.per_worker_s.items()
        ),
        "exited_workers": exited,
        "broker_fault_note": "; ".join(
            [f"server worker {k} exited during the fault ({how})"
             for k, how in sorted(result.exited_workers.items())]
            + ([fault.note] if fault.note else [])
        ),
    }  # fmt: skip


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
    errors = sum(r.errors for r in result.reports)
    if spec.broker_fault:
        # Deliveries the broker's outage cost are the scenario's figure (lost_broadcasts), not
        # errors; duplicates and frames that match no message still are.
        errors -= sum(r.missing for r in result.reports)
    if spec.mode == "reconnect" and result.reports:
        # A client that never exchanged messages again is an error; lost messages are the
        # storm's figure (the server was down), not errors.
        found = reconnect_recovery(result)
        errors += found.clients - found.recovered
    nan = math.nan
    client_cpu = max((u.cpu_pct for u in result.client_usage), default=math.nan)
    # All generator processes together, over the same window as the server's CPU: the gate
    # compares the two across machines (bench.gate.check).
    generator_cpu = sum(u.cpu_pct for u in result.client_usage) if result.client_usage else math.nan
    send_lag_p99 = send_lag.p99_us if send_lag else math.nan
    connect_mode = spec.mode == "connect"
    # A connect storm's messages are one per connection, not a throughput; memory rows send
    # none; a reconnect storm's are a trickle to see who is connected.
    messages = result.reports and spec.mode not in ("connect", "memory", "reconnect")
    throughput = received / spec.duration_s if messages else nan
    server_cpu = result.server_usage.cpu_pct if result.server_usage else nan
    generator_headroom = (
        headroom(result.generator_ceiling_msgs_s, throughput, result.generator_processes)
        if result.reports
        else nan
    )
    client_bound = (
        (not math.isnan(client_cpu) and client_cpu >= CLIENT_BOUND_CPU_PCT)
        or (spec.mode != "closed" and send_lag_p99 > CLIENT_BOUND_SEND_LAG_US)
        or generator_headroom < MIN_HEADROOM
        or (
            spec.mode == "closed"
            and result.generator_cpus_steal_pct >= CLIENT_BOUND_GENERATOR_STEAL_PCT
        )
    )
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
        "target_rate": {
            "open": spec.rate_msgs_s,
            "fanout": spec.rate_msgs_s,
            "capacity": result.capacity_msgs_s,
        }.get(spec.mode, nan),
        "repeat": spec.repeat,
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "slice_s": spec.slice_s,
        "round_msgs": round_messages(result.reports) if spec.mode == "closed" else "",
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
        "inflight": spec.inflight if spec.mode == "closed" else nan,
        "ack": spec.ack,
        "workers": spec.workers,
        "handicap_us": spec.handicap_us,
        "send_lag_p99_us": send_lag_p99 if spec.mode != "closed" else nan,
        "slo_p99_ms": spec.slo_p99_ms if spec.slo_p99_ms is not None else nan,
        "capacity_msgs_s": result.capacity_msgs_s,
        "connect_s": _round(result.connect_s, 4),
        "connect_p50_us": connect.p50_us if connect else nan,
        "connect_p99_us": connect.p99_us if connect else nan,
        "target_conns_s": spec.rate_conns_s if connect_mode else nan,
        "connects_per_s": _round(connects_per_second(result)) if connect_mode else nan,
        "connect_failures": sum(r.connect_failures for r in result.reports),
        "server_cpu_us_per_conn": _round(server_cpu_us_per_connection(result)),
        **fanout_fields(result, latency),
        "server_workers": spec.server_workers,
        "broker": spec.broker,
        "broker_version": result.broker_version,
        "server_cpu_pct_per_worker": " ".join(
            f"{k}:{u.cpu_pct:.1f}" for k, u in enumerate(result.server_worker_usage)
        )
        if len(result.server_worker_usage) > 1
        else "",
        **scaleout_fields(result),
        "broker_fault": spec.broker_fault,
        **broker_fault_fields(result),
        **memory_fields(result),
        **reconnect_fields(result),
        "extensions_negotiated": result.probe.extensions_negotiated if result.probe else "",
        "extensions_offered_by_probe": (
            result.probe.extensions_offered_by_probe if result.probe else ""
        ),
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
            writer = csv.DictWriter(stream, fieldnames=COLUMNS)
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
                            for name in (
                                "fanout_first_hist",
                                "fanout_median_hist",
                                "fanout_last_hist",
                            )
                            if result.spec.mode == "fanout"
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
