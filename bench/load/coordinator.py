"""Starts generator worker processes, starts them together, collects their reports.

The pyperf pattern: each worker gets its plan as one JSON line on stdin and answers with JSON
lines on stdout. Every wait has a deadline; a worker that dies, fails or hangs fails the run
with a message naming it, and ``close`` always stops every worker.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from time import monotonic_ns
from typing import Any

from bench.errors import RunFailed
from bench.load.plan import WorkerPlan, WorkerReport
from bench.metrics.sampling import WindowUsage
from bench.processes import python_argv, start_process, stop_process

# Delay between the start signal and the first send, so that every worker has read it: an
# idle worker waits on its stdin in its event loop, a wake-up of well under a millisecond; 0.1 s
# leaves room for a busy host's scheduling (0.3 s until 2026-12-02, 0.2 s a cell of the suite's
# 10-minute budget). A worker that reads it late starts late; open-loop latency still counts
# from the intended send times.
START_DELAY_S = 0.1
# Allowance on top of a phase's own length before a worker counts as hung.
GRACE_S = 20.0


class WorkerPool:
    def __init__(
        self,
        plans: list[WorkerPlan],
        cpus: frozenset[int],
        log_dir: Path,
        module: str = "bench.load.worker",
        grace_s: float = GRACE_S,
        count: int | None = None,
    ) -> None:
        """``count``: how many processes ``spawn`` starts before the plans are known (the
        plans, as many, are set before ``connect``); by default one per plan."""
        self.plans = plans
        self.count = len(plans) if count is None else count
        self.module = module
        self.grace_s = grace_s
        self.cpus = cpus
        self.log_dir = log_dir
        self.processes: list[asyncio.subprocess.Process] = []
        # The workers' CPU and memory as they read it themselves, where the harness's sampler
        # cannot (shards on other hosts); [] when sampled here.
        self.shard_usage: list[WindowUsage] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def spawn(self) -> None:
        """Start the worker processes, which then wait for their plans on stdin. Run beside
        the server's start (on the other cores), it takes the interpreters' start-up, about
        0.4 s a cell and 2 s for a time-sliced pass of four servers, off the suite's time."""
        if self.processes:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            self.processes.append(
                await start_process(
                    python_argv(self.module),
                    cpus=self.cpus,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=self.log_dir / f"worker-{index}.log",
                )
            )

    async def spawn_and_connect(self) -> float:
        """Start the workers (unless ``spawn`` did) and wait until each has opened its
        connections; returns the slowest worker's connecting time in seconds."""
        await self.spawn()
        if len(self.plans) != len(self.pids):
            raise RunFailed(f"{len(self.plans)} worker plans for {len(self.pids)} worker processes")
        for index, plan in enumerate(self.plans):
            await self._write(index, plan.to_json())
        connect_budget = max(p.connect_timeout_s for p in self.plans) + self.grace_s
        # Set-ups share the server (and its core): allow for 250 a second over all workers,
        # below the slowest rate measured here (174 a second, Socket.IO polling-upgrade on
        # node-socketio); 50,000 connections over 3 workers did not connect in the 63 s the
        # former 500 a second per worker allowed (3 websockets processes on one core).
        connect_budget += sum(p.connections for p in self.plans) * 0.004
        answers = await self._gather_events("connected", connect_budget)
        return max(float(a["connect_s"]) for a in answers)

    @property
    def samples_locally(self) -> bool:
        """Its workers' pids are this machine's, for the harness's sampler to read."""
        return True

    async def go(self, start_ns: int | None = None) -> int:
        """Send the start signal; ``start_ns`` lets several pools share one start."""
        if start_ns is None:
            start_ns = monotonic_ns() + int(START_DELAY_S * 1e9)
        for index in range(len(self.pids)):
            await self._write(index, f"GO {start_ns}")
        return start_ns

    async def event(self, expected: str, timeout_s: float) -> list[dict[str, Any]]:
        """Wait for every worker's next event, which must be ``expected`` (a mode's own pause
        point: the instructions worker's "phase"), within ``timeout_s``."""
        return await self._gather_events(expected, timeout_s)

    async def tell(self, line: str) -> None:
        """Send one line to every worker (the instructions worker's "NEXT")."""
        for index in range(len(self.pids)):
            await self._write(index, line)

    async def raw_reports(self) -> list[dict[str, Any]]:
        plan = self.plans[0]
        budget = plan.span_s + plan.drain_timeout_s + START_DELAY_S
        budget += self.grace_s
        answers = await self._gather_events("report", budget)
        for answer in answers:
            answer.pop("event")
        return answers

    async def reports(self) -> list[WorkerReport]:
        return [WorkerReport.from_dict(answer) for answer in await self.raw_reports()]

    async def close(self) -> None:
        await asyncio.gather(*(stop_process(p, grace_s=2.0) for p in self.processes))

    async def _write(self, index: int, line: str) -> None:
        """One line to worker ``index``'s stdin (a Dask shard relays it: bench.load.cluster)."""
        stdin = self.processes[index].stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        await stdin.drain()

    async def _readline(self, index: int) -> bytes:
        """Worker ``index``'s next line; at its end, a RunFailed naming how it ended."""
        process = self.processes[index]
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            status = await process.wait()
            raise RunFailed(
                f"generator worker {index} exited with status {status} "
                f"(log: {self.log_dir / f'worker-{index}.log'})"
            )
        return line

    def _name(self, index: int) -> str:
        return f"generator worker {index}"

    async def _gather_events(self, expected: str, timeout_s: float) -> list[dict[str, Any]]:
        async def read(index: int) -> dict[str, Any]:
            line = await self._readline(index)
            name = self._name(index)
            try:
                answer: dict[str, Any] = json.loads(line)
            except ValueError as exc:
                raise RunFailed(f"{name} said {line[:80]!r}") from exc
            if answer.get("event") == "failed":
                raise RunFailed(f"{name}: {answer.get('message')}")
            if answer.get("event") != expected:
                raise RunFailed(f"{name}: expected {expected!r}, got {answer!r:.80}")
            return answer

        tasks = [asyncio.ensure_future(read(i)) for i in range(len(self.pids))]
        gathered = asyncio.gather(*tasks)
        # When the run is interrupted, the gathered failure is ours to drop, not to log.
        gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(gathered, timeout_s)
        except TimeoutError as exc:
            silent = ", ".join(self._name(i) for i, t in enumerate(tasks) if not t.done())
            raise RunFailed(
                f"generator workers did not report {expected!r} within {timeout_s:.0f} s "
                f"({silent or 'all answered late'})"
            ) from exc
        finally:
            for task in tasks:
                task.cancel()
