"""Connect storms: ``connections`` set-ups, each timed, at ``rate_conns_s`` a second (0: as
fast as the server accepts them), then one echo each and a close (``bench.load.connect_worker``).
Its rows are set-ups per second, set-up latency and the server's CPU per connection."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bench.load.stacks import FAST
from bench.modes import Metric, Mode, Option, rounded, zero_or_more
from bench.spec import POLLING_UPGRADE

if TYPE_CHECKING:
    from bench.metrics.sampling import ProcessSampler
    from bench.runner import RunResult
    from bench.spec import RunSpec

# Time model: a cell took its storm plus about 1 s (wsbench run --scenario connect), and the
# slowest server set up about 700 connections a second at full speed.
FULL_SPEED_CONNS_S = 700.0


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


def _window(spec: RunSpec, result: RunResult, start_ns: int, reported_ns: int) -> tuple[int, int]:
    # The storm lasts until its slowest worker's last attempt finished.
    result.connect_s = max(r.connect_s for r in result.reports)
    return start_ns, start_ns + int(result.connect_s * 1e9)


def _sample(
    spec: RunSpec, result: RunResult, sampler: ProcessSampler, start_ns: int, reported_ns: int,
    server_pid: int | None,
) -> None:  # fmt: skip
    if server_pid is not None:
        # Until the workers reported: every connection set up, echoed and closed.
        result.server_storm_cpu_s = sampler.cpu_seconds_spanning("server", start_ns, reported_ns)


def _columns(result: RunResult) -> dict[str, Any]:
    return {
        "target_conns_s": result.spec.rate_conns_s,
        "connects_per_s": rounded(connects_per_second(result)),
        "server_cpu_us_per_conn": rounded(server_cpu_us_per_connection(result)),
    }


def _time_s(cell: RunSpec, servers: int) -> float:
    from bench.plan_time import CONNECT_SETUP_S

    return cell.connections / (cell.rate_conns_s or FULL_SPEED_CONNS_S) + CONNECT_SETUP_S


def _progress(record: Mapping[str, Any]) -> str:
    pace = f"{record['target_conns_s']:g}/s" if record["target_conns_s"] else "full speed"
    return (
        f"{record['connects_per_s']:>9,.0f} conns/s  set-up p50 "
        f"{record['connect_p50_us']:>7,.0f} µs  p99 {record['connect_p99_us']:>7,.0f} µs  "
        f"({record['transport']}, {pace})"
    )


MODE = Mode(
    name="connect",
    scenario="connect",
    help="connect (a storm of --connections set-ups, each timed, then one echo each)",
    stack=(FAST, "bench.load.connect_worker"),
    options=(
        Option(
            "rate_conns_s",
            "--connect-rate",
            "connect: connections opened per second (default: full speed, at most 64 "
            "set-ups under way); --duration is then the storm's time limit",
            lambda v, n: float(zero_or_more(v, n)),
            default=0.0,
        ),
    ),
    # Socket.IO's default path too: open over long-polling, then upgrade.
    transports=("websocket", "polling", POLLING_UPGRADE),
    refuses=("inflight", "ack"),
    refusal="sends one message per connection",
    scale_out=True,
    throughput=False,
    default_warmup_s=0.0,
    window=_window,
    sample=_sample,
    columns=("target_conns_s", "connects_per_s", "server_cpu_us_per_conn"),
    fill=_columns,
    metrics=(
        Metric("connects", "connects_per_s", "higher"),
        Metric("connect_p50", "connect_p50_us", "lower", ratio=False),
        Metric("connect_p99", "connect_p99_us", "lower"),
    ),
    headline="connects_per_s",
    median_columns=("server_cpu_us_per_conn",),
    time_s=_time_s,
    progress=_progress,
)
