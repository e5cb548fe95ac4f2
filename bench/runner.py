"""Runs one cell: start the server, probe its fairness, run the workers, sample, merge.

This is the I/O edge that ties the pieces together; the figures it reports are computed by the
pure modules it calls (histogram merging, window usage) and shaped into a row by
``bench.results``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.catalog import SERVERS
from bench.errors import RunFailed
from bench.load.coordinator import WorkerPool
from bench.load.plan import WorkerPlan, WorkerReport
from bench.metrics import fairness
from bench.metrics import histogram as hist
from bench.metrics.sampling import ProcessSampler, WindowUsage
from bench.processes import python_argv, start_process, stop_process
from bench.spec import RunSpec
from bench.target import websocket_url

SERVER_READY_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"
# A generator process at or above this share of its core may be what limits the run.
CLIENT_BOUND_CPU_PCT = 90.0
# Open loop: a generator sending this late (p99 of actual minus intended send time) is behind
# its own schedule; asyncio timers alone account for about 1 ms.
CLIENT_BOUND_SEND_LAG_US = 5000.0


@dataclass(frozen=True)
class Pinning:
    server_cpus: tuple[int, ...]
    generator_cpus: tuple[int, ...]


@dataclass
class RunResult:
    spec: RunSpec
    run_id: str
    started_utc: str
    status: str = "ok"  # "ok" or "failed"
    failure: str = ""
    reports: list[WorkerReport] = field(default_factory=list)
    window_s: tuple[int, int] = (0, 0)
    server_usage: WindowUsage | None = None
    client_usage: list[WindowUsage] = field(default_factory=list)
    probe: fairness.ProbeResult | None = None
    connect_s: float = math.nan
    server_exit_status: int | None = None

    def merged_latency_blob(self) -> str:
        return hist.encode(hist.merge(r.latency_hist for r in self.reports))

    def merged(self, attribute: str) -> Any:
        return hist.merge(getattr(r, attribute) for r in self.reports)


class ManagedServer:
    """A server under test started by the harness: READY line, then SIGTERM at the end."""

    def __init__(self, name: str, loop: str, cpus: frozenset[int], log_path: Path) -> None:
        self.info = SERVERS[name]
        self.loop = loop
        self.cpus = cpus
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = python_argv(self.info.module, "--host", LOOPBACK, "--port", "0", "--loop", self.loop)
        self.process = await start_process(argv, cpus=self.cpus, stderr=self.log_path)
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise RunFailed(
                f"server {self.info.name} did not print READY within "
                f"{SERVER_READY_TIMEOUT_S:.0f} s (log: {self.log_path})"
            ) from exc
        word, _, port = line.decode(errors="replace").strip().partition(" ")
        if word != "READY" or not port.isdigit():
            status = self.process.returncode
            raise RunFailed(
                f"server {self.info.name} failed to start (status {status}, log: {self.log_path})"
            )
        self.port = int(port)

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        return await stop_process(self.process)


def split_evenly(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def worker_plans(spec: RunSpec, url: str) -> list[WorkerPlan]:
    connections = split_evenly(spec.connections, spec.workers)
    return [
        WorkerPlan(
            url=url,
            protocol=spec.protocol,
            mode=spec.mode,
            connections=connections[index],
            payload_bytes=spec.payload_bytes,
            payload_kind=spec.payload_kind,
            warmup_s=spec.warmup_s,
            duration_s=spec.duration_s,
            inflight=spec.inflight,
            rate_msgs_s=spec.rate_msgs_s,
            ack=spec.ack,
            worker_index=index,
            worker_count=spec.workers,
        )
        for index in range(spec.workers)
    ]


async def run_cell(spec: RunSpec, run_id: str, out_dir: Path, pinning: Pinning) -> RunResult:
    """Run one cell; failures are returned as a result with status "failed", never raised."""
    result = RunResult(spec, run_id, datetime.now(UTC).isoformat(timespec="seconds"))
    log_dir = out_dir / "logs" / run_id
    server: ManagedServer | None = None
    pool: WorkerPool | None = None
    sampler: ProcessSampler | None = None
    try:
        if spec.managed:
            server = ManagedServer(
                spec.server, spec.loop, frozenset(pinning.server_cpus), log_dir / "server.log"
            )
            await server.start()
            url = websocket_url(f"ws://{LOOPBACK}:{server.port}/", spec.protocol)
            server_pid: int | None = server.process.pid if server.process else None
        else:
            assert spec.target_url is not None
            url = websocket_url(spec.target_url, spec.protocol)
            server_pid = spec.server_pid
        try:
            result.probe = await fairness.probe(url, spec.protocol)
        except Exception as exc:
            raise RunFailed(
                f"cannot open a WebSocket to {url}: {exc or type(exc).__name__}"
            ) from exc
        broken = fairness.violations(result.probe)
        if broken and spec.managed:
            raise RunFailed(f"fairness contract broken by {spec.server}: {'; '.join(broken)}")
        pool = WorkerPool(worker_plans(spec, url), frozenset(pinning.generator_cpus), log_dir)
        result.connect_s = await pool.spawn_and_connect()
        roles = {f"worker-{i}": pid for i, pid in enumerate(pool.pids)}
        if server_pid is not None:
            roles["server"] = server_pid
        sampler = ProcessSampler(roles)
        sampler.start()
        start_ns = await pool.go()
        window_start = start_ns + int(spec.warmup_s * 1e9)
        window_end = window_start + int(spec.duration_s * 1e9)
        result.window_s = (window_start, window_end)
        result.reports = await pool.reports()
        await sampler.stop()
        if server_pid is not None:
            result.server_usage = sampler.usage("server", window_start, window_end)
        result.client_usage = [
            sampler.usage(f"worker-{i}", window_start, window_end) for i in range(spec.workers)
        ]
        if server is not None and not server.alive():
            raise RunFailed(f"server {spec.server} exited during the run (log: {server.log_path})")
    except RunFailed as exc:
        result.status, result.failure = "failed", str(exc)
    except Exception as exc:  # a bug of ours: record it against the cell, keep the suite going
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "harness-error.log").write_text(traceback.format_exc())
        result.status = "failed"
        result.failure = f"internal error {exc!r} (traceback in {log_dir / 'harness-error.log'})"
    finally:
        if sampler is not None:
            with contextlib.suppress(Exception):
                await sampler.stop()
        if pool is not None:
            await pool.close()
        if server is not None:
            result.server_exit_status = await server.stop()
    return result
