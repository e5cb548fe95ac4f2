"""Capacity: the highest open-loop rate whose p99 meets an objective (``--slo-p99-ms``) with
zero errors, found by bisection from the closed-loop rate (``bench.load.capacity``). A cell is
a closed-loop run and open-loop probes; the best probe's figures are the row's."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import RunFailed
from bench.load.capacity import CapacitySearch, ProbeOutcome
from bench.metrics import histogram as hist
from bench.modes import Mode, Option, echo_figures, positive

if TYPE_CHECKING:
    from bench.runner import ManagedServer, Pinning, RunResult
    from bench.spec import RunSpec

CAPACITY_STEPS = 7  # bisection probes after the closed-loop bound (RunSpec's default)


def _outcome(result: RunResult, rate_msgs_s: float) -> ProbeOutcome:
    latency = hist.summarize(result.merged("latency_hist"))
    received = sum(r.received for r in result.reports)
    errors = sum(r.errors for r in result.reports)
    return ProbeOutcome(rate_msgs_s, latency.p99_us, errors, received / result.spec.duration_s)


async def search_capacity(
    spec: RunSpec, url: str, server: ManagedServer | None, server_pid: int | None,
    pinning: Pinning, log_dir: Path, result: RunResult,
) -> None:  # fmt: skip
    """Bisect open-loop rates for the highest one meeting the SLO; the best probe's figures
    become ``result``'s, and every probe is kept in ``result.capacity_probes``."""
    from bench.runner import RunResult, measure

    assert spec.slo_p99_ms is not None
    closed = RunResult(replace(spec, mode="closed"), result.run_id, result.started_utc)
    await measure(closed.spec, url, server_pid, pinning, log_dir / "closed", closed)
    closed_msgs_s = sum(r.received for r in closed.reports) / spec.duration_s
    search = CapacitySearch.from_closed_loop(spec.slo_p99_ms, closed_msgs_s, spec.capacity_steps)
    probes: dict[int, RunResult] = {}  # by id() of their outcome
    while not search.done:
        rate = round(search.next_rate(), 1)
        probe = RunResult(replace(spec, mode="open", rate_msgs_s=rate), result.run_id, "")
        number = len(search.history) + 1
        await measure(
            probe.spec, url, server_pid, pinning, log_dir / f"probe-{number}-{rate:.0f}", probe
        )
        outcome = _outcome(probe, rate)
        search.record(outcome)
        probes[id(outcome)] = probe
        result.capacity_probes.append(
            {**asdict(outcome), "passed": outcome.passes(spec.slo_p99_ms)}
        )
    best = probes[id(search.best)] if search.best is not None else None
    if best is None:
        raise RunFailed(
            f"no rate met p99 <= {spec.slo_p99_ms} ms with zero errors "
            f"(lowest tried: {search.upper_msgs_s:,.0f} msgs/s)"
        )
    result.capacity_msgs_s = best.spec.rate_msgs_s
    for name in ("reports", "window_s", "server_usage", "client_usage", "connect_s",
                 "server_cpus_steal_pct", "generator_cpus_steal_pct"):  # fmt: skip
        setattr(result, name, getattr(best, name))


def _columns(result: RunResult) -> dict[str, Any]:
    slo = result.spec.slo_p99_ms
    return {"slo_p99_ms": slo if slo is not None else math.nan,
            "capacity_msgs_s": result.capacity_msgs_s}  # fmt: skip


def _time_s(cell: RunSpec, servers: int) -> float:
    from bench.plan_time import SETUP_S

    # The closed-loop bound, then one open-loop probe per bisection step.
    return (1 + cell.capacity_steps) * (cell.warmup_s + cell.duration_s + SETUP_S)


def _progress(record: Any) -> str:
    return (
        f"capacity {record['capacity_msgs_s']:,.0f} msgs/s at p99 <= "
        f"{record['slo_p99_ms']:g} ms  {echo_figures(record)}"
    )


MODE = Mode(
    name="capacity",
    help="capacity (highest open-loop rate meeting --slo-p99-ms)",
    options=(
        Option(
            "slo_p99_ms",
            "--slo-p99-ms",
            "capacity: p99 latency objective",
            lambda v, n: float(positive(v, n)),
            required=True,
        ),
        Option(
            "capacity_steps",
            "--capacity-steps",
            f"capacity: bisection probes (default {CAPACITY_STEPS})",
            positive,
            type=int,
        ),
    ),
    in_suites=False,
    calibrated=True,
    run=search_capacity,
    columns=("slo_p99_ms", "capacity_msgs_s"),
    fill=_columns,
    target_rate=lambda spec, result: result.capacity_msgs_s,
    median_columns=("capacity_msgs_s", "slo_p99_ms"),
    time_s=_time_s,
    progress=_progress,
)
