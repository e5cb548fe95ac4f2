"""Fan-out: one publisher at ``rate_msgs_s`` broadcasts to ``connections`` receivers in a room
(``bench.load.fanout_worker``). Rows: deliveries per second and delivery latency (per message:
first, median and last receiver), exact delivery counts, slow consumers, and with several
server processes (scale-out) the latency on the publisher's process and across the broker,
counts per process, and what a broker fault cost (scenario broker-fault)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bench.analyze import broker_fault
from bench.errors import UsageError
from bench.load.fanout import deaf_workers, summed_per_worker
from bench.load.stacks import FAST
from bench.metrics import histogram as hist
from bench.modes import ECHO_METRICS, RATE, Metric, Mode, Option, rounded, zero_or_more

if TYPE_CHECKING:
    from bench.metrics.sampling import ProcessSampler
    from bench.runner import RunResult
    from bench.spec import RunSpec

# Time model: receivers connect at about this many a second (the slowest server, Socket.IO).
OPEN_CONNS_S = 700.0

FANOUT_COLUMNS = (
    "recipients", "fanout_p50_us", "fanout_p99_us", "fanout_first_p99_us",
    "fanout_median_p99_us", "fanout_last_p99_us", "delivered", "duplicated", "out_of_order",
    "slow_share", "slow_receivers", "slow_delivered", "slow_missing", "slow_dropped",
    "server_rss_growth_bytes",
)  # fmt: skip
SCALEOUT_COLUMNS = (
    "publisher_worker", "fanout_local_p50_us", "fanout_local_p99_us", "fanout_remote_p50_us",
    "fanout_remote_p99_us", "receivers_per_worker", "delivered_per_worker",
    "missing_per_worker", "duplicated_per_worker",
)  # fmt: skip
BROKER_FAULT_COLUMNS = (
    "broker_down_s", "broker_recovery_s", "lost_broadcasts",
    "recovery_per_worker", "exited_workers", "broker_fault_note",
)  # fmt: skip
TEXT_COLUMNS = (
    "receivers_per_worker", "delivered_per_worker", "missing_per_worker",
    "duplicated_per_worker", "recovery_per_worker", "exited_workers", "broker_fault_note",
)  # fmt: skip


def check_slow_share(share: Any, name: str) -> float:
    zero_or_more(share, name)
    if share >= 1:
        raise UsageError(f"{name} is a share of the receivers: from 0 up to (not including) 1")
    return float(share)


def _check(given: Mapping[str, Any], where: str) -> None:
    workers = given.get("server_workers", 1)
    fewest = min(workers) if isinstance(workers, list) else workers
    if given.get("broker_fault") and (fewest or 1) < 2:
        raise UsageError(
            f"{where + ': ' if where else ''}broker_fault kills the broker between server "
            "processes: fanout mode with server_workers of 2 or more"
        )


def fanout_fields(result: RunResult) -> dict[str, Any]:
    """Receivers, delivery latency (every delivery, and per message its first, median and last
    receiver's), and the exact delivery counts."""
    if not result.reports:
        return {}
    deliveries = hist.summarize(result.merged("latency_hist"))

    def p99(attribute: str) -> float:
        return hist.summarize(result.merged(attribute)).p99_us

    reports = result.reports
    return {
        "recipients": sum(r.recipients for r in reports),
        "fanout_p50_us": deliveries.p50_us,
        "fanout_p99_us": deliveries.p99_us,
        "fanout_first_p99_us": p99("fanout_first_hist"),
        "fanout_median_p99_us": p99("fanout_median_hist"),
        "fanout_last_p99_us": p99("fanout_last_hist"),
        "delivered": sum(r.received for r in reports),
        "duplicated": sum(r.duplicated for r in reports),
        "out_of_order": sum(r.out_of_order for r in reports),
        # Slow consumers: the figures above are the fast receivers'; these, the slow ones'.
        "slow_share": result.spec.slow_share,
        "slow_receivers": sum(r.slow_receivers for r in reports),
        "slow_delivered": sum(r.slow_delivered for r in reports),
        "slow_missing": sum(r.slow_missing for r in reports),
        "slow_dropped": sum(r.slow_dropped for r in reports),
        "server_rss_growth_bytes": result.server_rss_growth_bytes,
    }


def per_worker_text(counts: dict[str, int]) -> str:
    """``{"0": 500, "1": 498}`` as ``0:500 1:498`` (a server process's id, then its count)."""
    return " ".join(f"{worker}:{count}" for worker, count in sorted(counts.items(), key=_by_id))


def _by_id(item: tuple[str, int]) -> int:
    return int(item[0])


def scaleout_fields(result: RunResult) -> dict[str, Any]:
    """With several server processes: where the publisher was, the delivery latency on its
    process (local) and across the broker (remote), and the counts per process."""
    reports = [r for r in result.reports if r.publisher_worker >= 0]
    if not reports:
        return {}

    def percentiles(attribute: str) -> tuple[float, float]:
        merged = hist.merge(getattr(r, attribute) for r in reports)
        if merged.get_total_count() == 0:
            return math.nan, math.nan
        found = hist.summarize(merged)
        return found.p50_us, found.p99_us

    def per_worker(attribute: str) -> str:
        return per_worker_text(summed_per_worker([getattr(r, attribute) for r in reports]))

    local_p50, local_p99 = percentiles("fanout_local_hist")
    remote_p50, remote_p99 = percentiles("fanout_remote_hist")
    return {
        "publisher_worker": reports[0].publisher_worker,
        "fanout_local_p50_us": local_p50,
        "fanout_local_p99_us": local_p99,
        "fanout_remote_p50_us": remote_p50,
        "fanout_remote_p99_us": remote_p99,
        "receivers_per_worker": per_worker("worker_receivers"),
        "delivered_per_worker": per_worker("worker_delivered"),
        "missing_per_worker": per_worker("worker_missing"),
        "duplicated_per_worker": per_worker("worker_duplicated"),
    }


def broker_fault_fields(result: RunResult) -> dict[str, Any]:
    """Broker-fault rows: how long the broker was gone, what was lost, and when each server
    process's receivers got broadcasts again (bench.analyze.broker_fault)."""
    reports = [r for r in result.reports if r.publisher_worker >= 0]
    exited = " ".join(str(k) for k in sorted(result.exited_workers))
    fields: dict[str, Any] = {"exited_workers": exited, "broker_fault_note": ""}
    if not result.spec.broker_fault or not reports or not result.broker_restarted_ns:
        return fields
    (report,) = reports  # fan-out runs one generator worker
    fault = broker_fault.analyse(
        report.message_intended_ns,
        {int(w): row for w, row in report.worker_message_delivered.items()},
        {int(w): n for w, n in report.worker_receivers.items()},
        result.broker_restarted_ns,
    )
    return {
        **fields,
        "broker_down_s": rounded((result.broker_restarted_ns - result.broker_killed_ns) / 1e9, 3),
        "broker_recovery_s": rounded(fault.recovery_s, 3),
        "lost_broadcasts": fault.lost_broadcasts,
        "recovery_per_worker": " ".join(
            f"{w}:{'never' if math.isnan(t) else f'{t:.3f}'}" for w, t in fault.per_worker_s.items()
        ),
        "broker_fault_note": "; ".join(
            [f"server worker {k} exited during the fault ({how})"
             for k, how in sorted(result.exited_workers.items())]
            + ([fault.note] if fault.note else [])
        ),
    }  # fmt: skip


def _columns(result: RunResult) -> dict[str, Any]:
    return {**fanout_fields(result), **scaleout_fields(result), **broker_fault_fields(result)}


def _sample(
    spec: RunSpec, result: RunResult, sampler: ProcessSampler, start_ns: int, reported_ns: int,
    server_pid: int | None,
) -> None:  # fmt: skip
    if server_pid is not None:
        result.server_rss_growth_bytes = sampler.rss_growth("server", start_ns, reported_ns)


def _check_result(spec: RunSpec, result: RunResult) -> str:
    # A server process none of whose receivers got anything: its broker link is broken.
    if spec.server_workers > 1:
        return "; ".join(deaf_workers(result.reports, spec.server_workers))
    return ""


def _extra_errors(result: RunResult) -> int:
    # Deliveries the broker's outage cost are the scenario's figure (lost_broadcasts), not
    # errors; duplicates and frames that match no message still are.
    if result.spec.broker_fault:
        return -sum(r.missing for r in result.reports)
    return 0


def _time_s(cell: RunSpec, servers: int) -> float:
    from bench.plan_time import CONNECT_SETUP_S

    return cell.connections / OPEN_CONNS_S + cell.warmup_s + cell.duration_s + CONNECT_SETUP_S


def _progress(record: Mapping[str, Any]) -> str:
    return (
        f"{record['throughput_msgs_s']:>9,.0f} deliveries/s to {record['recipients']:,.0f}  "
        f"p50 {record['fanout_p50_us']:>7,.0f} µs  p99 {record['fanout_p99_us']:>7,.0f} µs  "
        f"last receiver p99 {record['fanout_last_p99_us']:>7,.0f} µs"
    )


MODE = Mode(
    name="fanout",
    scenario="fanout",
    help="fanout (one publisher at --rate msgs/s broadcast to --connections receivers)",
    stack=(FAST, "bench.load.fanout_worker"),
    options=(
        RATE,
        Option(
            "slow_share",
            "--slow-share",
            "fanout: share of receivers that read slowly (slow consumers), e.g. 0.1",
            check_slow_share,
        ),
        # Suites only (scenario broker-fault): kill the broker mid-window.
        Option("broker_fault", "", "", lambda v, n: bool(v), type=None),
    ),
    refuses=("workers", "inflight", "ack", "binary", "polling", "slice"),
    refusal="publishes text over WebSocket from one worker",
    scale_out=True,
    extra_check=_check,
    sample=_sample,
    check_result=_check_result,
    extra_errors=_extra_errors,
    columns=(*FANOUT_COLUMNS, *SCALEOUT_COLUMNS, *BROKER_FAULT_COLUMNS),
    text_columns=TEXT_COLUMNS,
    fill=_columns,
    target_rate=lambda spec, result: spec.rate_msgs_s,
    metrics=(*ECHO_METRICS, Metric("fanout_last_p99", "fanout_last_p99_us", "lower")),
    median_columns=(
        "recipients",
        "fanout_p99_us",
        "delivered",
        "slow_receivers",
        "slow_dropped",
        "slow_missing",
        "server_rss_growth_bytes",
        "fanout_local_p50_us",
        "fanout_local_p99_us",
        "fanout_remote_p50_us",
        "fanout_remote_p99_us",
        "broker_recovery_s",
        "lost_broadcasts",
    ),
    time_s=_time_s,
    progress=_progress,
    histograms=("fanout_first_hist", "fanout_median_hist", "fanout_last_hist"),
)
