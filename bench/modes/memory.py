"""Memory per connection: idle connections held at each of ``memory_steps`` in turn, the
server's RSS and USS sampled at each, and a line fitted through the points
(``bench.load.memory_worker``, ``bench.analyze.stats``). No messages are sent."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bench.analyze.stats import fit_line
from bench.errors import UsageError
from bench.load.stacks import FAST
from bench.modes import Metric, Mode, Option, rounded

if TYPE_CHECKING:
    import pandas as pd

    from bench.load.plan import WorkerReport
    from bench.metrics.sampling import ProcessSampler
    from bench.runner import RunResult
    from bench.spec import RunSpec

DEFAULT_STEPS = (0, 1000, 2000, 5000)
# Each step settles for a second, then is sampled for a second (unless told otherwise).
WARMUP_S = 1.0
DURATION_S = 1.0
# Time model: connections open at about this many a second (Socket.IO; 5,000 in 12-15 s in
# make bench on 2026-11-22).
MEMORY_CONNS_S = 400.0


def check_steps(steps: Any, name: str) -> tuple[int, ...]:
    """At least three increasing connection counts (from a suite's list of numbers, or the
    command line's comma list)."""
    try:
        counts = [int(n) if isinstance(n, str) else n for n in steps]
    except ValueError:
        raise UsageError(f"{name}: comma list of whole numbers") from None
    if (
        len(counts) < 3
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts)
        or counts != sorted(set(counts))
    ):
        raise UsageError(
            f"{name} must be at least three increasing connection counts "
            f"(a line through two points has no interval), got {list(steps)!r}"
        )
    return tuple(counts)


def memory_points(
    spec: RunSpec, reports: list[WorkerReport], sampler: ProcessSampler
) -> list[tuple[int, float, float]]:
    """Per step: connections, and the server's median RSS and USS over the step's sampling
    window (after ``warmup_s`` of settling, ``duration_s`` long)."""
    points = []
    for connections, reached_ns in reports[0].memory_steps_ns:
        start = reached_ns + int(spec.warmup_s * 1e9)
        rss, uss = sampler.memory("server", start, start + int(spec.duration_s * 1e9))
        points.append((connections, rss, uss))
    return points


def _window(spec: RunSpec, result: RunResult, start_ns: int, reported_ns: int) -> tuple[int, int]:
    return start_ns, reported_ns


def _sample(
    spec: RunSpec, result: RunResult, sampler: ProcessSampler, start_ns: int, reported_ns: int,
    server_pid: int | None,
) -> None:  # fmt: skip
    if server_pid is not None:
        result.memory_points = memory_points(spec, result.reports, sampler)


def memory_fields(result: RunResult) -> dict[str, Any]:
    """The slope of the server's RSS (and USS) over connections held, in KiB per connection,
    with its 95% interval, R², the intercept, and the points themselves."""
    points = result.memory_points
    if not points:
        return {}
    connections = [p[0] for p in points]
    rss = fit_line(connections, [p[1] / 1024 for p in points])
    uss = fit_line(connections, [p[2] / 1024 for p in points])
    return {
        "mem_kib_per_conn": rounded(rss.slope, 3),
        "mem_kib_per_conn_ci_low": rounded(rss.slope_ci_low, 3),
        "mem_kib_per_conn_ci_high": rounded(rss.slope_ci_high, 3),
        "mem_r2": rounded(rss.r2, 4),
        "mem_intercept_mib": rounded(rss.intercept / 1024, 2),
        "mem_uss_kib_per_conn": rounded(uss.slope, 3),
        # connections, RSS bytes, USS bytes per step
        "mem_points": json.dumps([[c, r, u] for c, r, u in points]),
    }


def _summarize(valid: pd.DataFrame, record: dict[str, Any]) -> None:
    if len(valid) == 1:
        # One pass: the interval is the fit's own (runs.csv), not a degenerate one.
        only = valid.iloc[0]
        record["mem_kib_per_conn_ci_low"] = only.get("mem_kib_per_conn_ci_low", math.nan)
        record["mem_kib_per_conn_ci_high"] = only.get("mem_kib_per_conn_ci_high", math.nan)


def _time_s(cell: RunSpec, servers: int) -> float:
    from bench.plan_time import CONNECT_SETUP_S

    held_s = len(cell.memory_steps) * (cell.warmup_s + cell.duration_s)
    return cell.connections / MEMORY_CONNS_S + held_s + CONNECT_SETUP_S


def _progress(record: Mapping[str, Any]) -> str:
    return (
        f"{record['mem_kib_per_conn']:>7,.1f} KiB per connection "
        f"[{record['mem_kib_per_conn_ci_low']:,.1f}, {record['mem_kib_per_conn_ci_high']:,.1f}]"
        f"  R² {record['mem_r2']:.3f}  up to {record['connections']:,} connections"
    )


MODE = Mode(
    name="memory",
    scenario="memory",
    help="memory (idle connections held at each of --memory-steps, the server's memory fitted)",
    stack=(FAST, "bench.load.memory_worker"),
    options=(
        Option(
            "memory_steps",
            "--memory-steps",
            "memory: comma list of increasing connection counts (default "
            f"{','.join(map(str, DEFAULT_STEPS))}); --warmup is the settling time (default "
            f"{WARMUP_S:g}) and --duration the sampling time (default {DURATION_S:g}) at each",
            check_steps,
            type=None,
            default=DEFAULT_STEPS,
            whole=True,
        ),
    ),
    refuses=("workers", "connections"),
    refusal="holds the connections of its steps from one worker",
    cell_fields=lambda fields: {"connections": max(fields["memory_steps"])},
    throughput=False,
    default_warmup_s=WARMUP_S,
    default_duration_s=DURATION_S,
    uss=True,
    window=_window,
    sample=_sample,
    columns=(
        "mem_kib_per_conn",
        "mem_kib_per_conn_ci_low",
        "mem_kib_per_conn_ci_high",
        "mem_r2",
        "mem_intercept_mib",
        "mem_uss_kib_per_conn",
        "mem_points",
    ),
    text_columns=("mem_points",),
    fill=memory_fields,
    metrics=(Metric("mem_kib_per_conn", "mem_kib_per_conn", "lower"),),
    headline="mem_kib_per_conn",
    median_columns=("mem_r2", "mem_intercept_mib"),
    summarize=_summarize,
    time_s=_time_s,
    progress=_progress,
)
