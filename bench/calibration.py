"""The generator's own ceiling: how many echoes a second one worker can drive and verify.

Measured against the built-in picows echo server (``bench.load.echo_server``), which answers
far faster than any server under test, so the generator itself is what saturates. Every run row
then records ``generator_headroom`` = ceiling / measured throughput: near 1 the row may be
measuring the generator, not the server.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.errors import RunFailed
from bench.load.coordinator import WorkerPool
from bench.load.plan import WorkerPlan
from bench.metrics.sampling import ProcessSampler
from bench.processes import python_argv, start_process, stop_process
from bench.runner import LOOPBACK, SERVER_READY_TIMEOUT_S, Pinning

# Enough in flight that the generator never waits for the (much faster) echo server.
CALIBRATION_CONNECTIONS = 10
CALIBRATION_INFLIGHT = 8
# Below this headroom a row is marked client_bound, whatever CPU sampling said.
MIN_HEADROOM = 1.3


@dataclass(frozen=True)
class Calibration:
    payload_bytes: int
    payload_kind: str
    ceiling_msgs_s: float  # median over rounds
    rounds_msgs_s: tuple[float, ...]
    generator_cpu_pct: float  # median; near 100 when the generator is what saturates
    echo_server_cpu_pct: float
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def headroom(ceiling_msgs_s: float, throughput_msgs_s: float, generator_processes: int) -> float:
    """How many times the measured throughput the generator could drive (pure)."""
    if throughput_msgs_s <= 0:
        return float("inf")
    return ceiling_msgs_s * generator_processes / throughput_msgs_s


async def calibrate(
    payload_bytes: int,
    payload_kind: str,
    pinning: Pinning,
    log_dir: Path,
    rounds: int = 1,
    duration_s: float = 2.0,
) -> Calibration:
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = python_argv("bench.load.echo_server", "--host", LOOPBACK, "--port", "0")
    server = await start_process(
        argv, cpus=frozenset(pinning.server_cpus), stderr=log_dir / "echo-server.log"
    )
    try:
        assert server.stdout is not None
        try:
            line = await asyncio.wait_for(server.stdout.readline(), SERVER_READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise RunFailed("the calibration echo server did not start") from exc
        word, _, port = line.decode().strip().partition(" ")
        if word != "READY":
            raise RunFailed(f"the calibration echo server failed (log: {log_dir})")
        plan = WorkerPlan(
            url=f"ws://{LOOPBACK}:{port}/",
            protocol="raw",
            mode="closed",
            connections=CALIBRATION_CONNECTIONS,
            inflight=CALIBRATION_INFLIGHT,
            payload_bytes=payload_bytes,
            payload_kind=payload_kind,  # type: ignore[arg-type]
            warmup_s=0.5,
            duration_s=duration_s,
        )
        throughputs: list[float] = []
        generator_cpu: list[float] = []
        server_cpu: list[float] = []
        for _ in range(rounds):
            pool = WorkerPool([plan], frozenset(pinning.generator_cpus), log_dir)
            try:
                await pool.spawn_and_connect()
                sampler = ProcessSampler({"generator": pool.pids[0], "server": server.pid})
                sampler.start()
                start_ns = await pool.go()
                (report,) = await pool.reports()
                await sampler.stop()
            finally:
                await pool.close()
            if report.errors:
                raise RunFailed("the generator saw errors against the calibration echo server")
            window_start = start_ns + int(plan.warmup_s * 1e9)
            window_end = window_start + int(duration_s * 1e9)
            throughputs.append(report.received / duration_s)
            generator_cpu.append(sampler.usage("generator", window_start, window_end).cpu_pct)
            server_cpu.append(sampler.usage("server", window_start, window_end).cpu_pct)
    finally:
        await stop_process(server)
    return Calibration(
        payload_bytes=payload_bytes,
        payload_kind=payload_kind,
        ceiling_msgs_s=statistics.median(throughputs),
        rounds_msgs_s=tuple(throughputs),
        generator_cpu_pct=statistics.median(generator_cpu),
        echo_server_cpu_pct=statistics.median(server_cpu),
        duration_s=duration_s,
    )
