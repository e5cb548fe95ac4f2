"""The generator's own ceiling: how many echoes a second one worker can drive and verify.

Measured against the built-in picows echo server (``bench.load.echo_server``), which answers
far faster than any server under test, so the generator itself is what saturates. Every run row
then records ``generator_headroom`` = ceiling / measured throughput: near 1 the row may be
measuring the generator, not the server.

The ceiling is what the generator drives with a whole core: each round's rate divided by the
share of its core it got. On a shared VM the hypervisor can take most of that core for the
two seconds of a round (seen here: 34.5k msgs/s at 29% CPU in one suite, 111k-134k at 99% in
others of the same code); taken as it came, such a round made quiet runs look generator-bound.
Scaling by CPU is conservative: a generator with less CPU batches less, so its cost per message
is, if anything, higher.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.errors import RunFailed
from bench.load.plan import WorkerPlan, WorkerReport
from bench.runner import LOOPBACK, ManagedServer, Pinning, measure_solo

# Enough in flight that the generator never waits for the (much faster) echo server.
CALIBRATION_CONNECTIONS = 10
CALIBRATION_INFLIGHT = 8
# Below this headroom a row is marked client_bound, whatever CPU sampling said.
MIN_HEADROOM = 1.3


@dataclass(frozen=True)
class Calibration:
    payload_bytes: int
    payload_kind: str
    ceiling_msgs_s: float  # median over rounds of the rate scaled to a whole generator core
    rounds_msgs_s: tuple[float, ...]  # the rates measured, unscaled
    generator_cpu_pct: float  # median; near 100 when the generator is what saturates
    echo_server_cpu_pct: float
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def full_core_rate(msgs_s: float, generator_cpu_pct: float) -> float:
    """A round's rate scaled to a whole core of the generator (pure): the rate itself when the
    generator had its core (or CPU was not sampled), else rate / CPU share."""
    if not 0 < generator_cpu_pct < 100:
        return msgs_s
    return msgs_s / (generator_cpu_pct / 100)


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
    server = ManagedServer(
        "calibration echo server", "uvloop", frozenset(pinning.server_cpus),
        log_dir / "echo-server.log", module="bench.load.echo_server",
    )  # fmt: skip
    throughputs: list[float] = []
    generator_cpu: list[float] = []
    server_cpu: list[float] = []
    try:
        await server.start()
        assert server.process is not None
        plan = WorkerPlan(
            url=f"ws://{LOOPBACK}:{server.port}/",
            protocol="raw",
            mode="closed",
            connections=CALIBRATION_CONNECTIONS,
            inflight=CALIBRATION_INFLIGHT,
            payload_bytes=payload_bytes,
            payload_kind=payload_kind,  # type: ignore[arg-type]
            warmup_s=0.5,
            duration_s=duration_s,
        )
        for _ in range(rounds):
            measured = await measure_solo(
                "bench.load.worker", plan, server.process.pid, pinning, log_dir
            )
            report = WorkerReport.from_dict(measured.answer)
            if report.errors:
                raise RunFailed("the generator saw errors against the calibration echo server")
            throughputs.append(report.received / duration_s)
            generator_cpu.append(measured.client.cpu_pct)
            server_cpu.append(measured.server.cpu_pct)
    finally:
        await server.stop()
    return Calibration(
        payload_bytes=payload_bytes,
        payload_kind=payload_kind,
        ceiling_msgs_s=statistics.median(
            full_core_rate(msgs_s, cpu_pct)
            for msgs_s, cpu_pct in zip(throughputs, generator_cpu, strict=True)
        ),
        rounds_msgs_s=tuple(throughputs),
        generator_cpu_pct=statistics.median(generator_cpu),
        echo_server_cpu_pct=statistics.median(server_cpu),
        duration_s=duration_s,
    )
