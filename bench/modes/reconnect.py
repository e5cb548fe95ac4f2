"""Reconnect storms: ``connections`` clients of the libraries' own reconnecting stacks send
``rate_msgs_s`` in all; ``warmup_s`` after the start the server is killed and started again on
the same port, and recovery is timed for ``duration_s`` (``bench.load.reconnect_worker``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from bench.errors import RunFailed
from bench.load.reconnect import BACKOFF, Recovery, recovery
from bench.load.stacks import LIBRARY
from bench.modes import RATE, Mode, rounded

if TYPE_CHECKING:
    from bench.runner import ManagedServer, Pinning, RunResult
    from bench.spec import RunSpec

# Time model: the library clients connect at about this many a second; the restart.
LIBRARY_CONNS_S = 300.0
RESTART_S = 1.0


async def measure_reconnect(
    spec: RunSpec, url: str, server: ManagedServer | None, server_pid: int | None,
    pinning: Pinning, log_dir: Path, result: RunResult,
) -> None:  # fmt: skip
    """Clients exchange messages; ``warmup_s`` after the start the server is killed and
    started again on the same port; the run goes on for ``duration_s`` after the kill."""
    from bench.load.coordinator import WorkerPool
    from bench.runner import worker_plans

    if server is None:
        raise RunFailed("a reconnect storm restarts the server: it must be a managed one")
    (plan,) = worker_plans(spec, url)
    pool = WorkerPool([plan], frozenset(pinning.generator_cpus), log_dir, module=spec.worker_module)
    try:
        result.connect_s = await pool.spawn_and_connect()
        start_ns = await pool.go()
        await asyncio.sleep(max(0.0, (start_ns - monotonic_ns()) / 1e9 + spec.warmup_s))
        result.killed_ns = await server.kill_and_restart()
        result.reports = await pool.reports()
        result.window_s = (start_ns, start_ns + int((spec.warmup_s + spec.duration_s) * 1e9))
    finally:
        await pool.close()


def reconnect_recovery(result: RunResult) -> Recovery:
    return recovery(result.killed_ns, [t for r in result.reports for t in r.recovered_ns])


def reconnect_fields(result: RunResult) -> dict[str, Any]:
    """Seconds from the kill until half, 99% and all clients exchanged messages again, how
    many did, the messages lost meanwhile, and the backoff in force."""
    if not result.reports:
        return {}
    found = reconnect_recovery(result)
    return {
        "recovery_p50_s": rounded(found.p50_s, 3),
        "recovery_p99_s": rounded(found.p99_s, 3),
        "recovery_all_s": rounded(found.all_s, 3),
        "recovered_clients": found.recovered,
        "lost": sum(r.lost for r in result.reports),
        "backoff": BACKOFF.describe(),
    }


def _extra_errors(result: RunResult) -> int:
    # A client that never exchanged messages again is an error; lost messages are the storm's
    # figure (the server was down), not errors.
    if not result.reports:
        return 0
    found = reconnect_recovery(result)
    return found.clients - found.recovered


def _time_s(cell: RunSpec, servers: int) -> float:
    from bench.plan_time import CONNECT_SETUP_S

    return (
        cell.connections / LIBRARY_CONNS_S
        + cell.warmup_s
        + cell.duration_s
        + CONNECT_SETUP_S
        + RESTART_S
    )


def _progress(record: Mapping[str, Any]) -> str:
    return (
        f"recovered: half {record['recovery_p50_s']:.2f} s, "
        f"99% {record['recovery_p99_s']:.2f} s, all {record['recovery_all_s']:.2f} s "
        f"({record['recovered_clients']:,} of "
        f"{record['connections']:,})  lost {record['lost']:,} of {record['sent']:,} messages"
    )


MODE = Mode(
    name="reconnect",
    scenario="reconnect",
    help="reconnect (--connections clients sending --rate msgs/s in all; the server is killed "
    "after --warmup and restarted; recovery is timed for --duration)",
    stack=(LIBRARY, "bench.load.reconnect_worker"),
    options=(RATE,),
    refuses=("workers", "inflight", "ack", "binary", "polling"),
    refusal="runs text requests over WebSocket from one worker",
    target_refused="it kills and restarts the server, which only a server the harness "
    "started allows",
    throughput=False,
    run=measure_reconnect,
    extra_errors=_extra_errors,
    columns=(
        "recovery_p50_s",
        "recovery_p99_s",
        "recovery_all_s",
        "recovered_clients",
        "lost",
        "backoff",
    ),
    text_columns=("backoff",),
    fill=reconnect_fields,
    median_columns=(
        "recovery_p50_s",
        "recovery_p99_s",
        "recovery_all_s",
        "recovered_clients",
        "lost",
    ),
    time_s=_time_s,
    progress=_progress,
)
