"""The throwaway burst mode's generator worker (tests/integration/burst_mode.py): on the
harness's worker skeleton (bench.load.engine), it supplies only how to connect and what to
send, ``python -m tests.integration.burst_worker``."""

from __future__ import annotations

from time import monotonic_ns

from bench.load.alarm import sleep_until
from bench.load.client import EchoConnection, Tally, connect
from bench.load.engine import FRAME_SLACK_BYTES, run_worker, worker_main
from bench.load.plan import WorkerPlan, WorkerReport
from bench.protocol.exchange import Exchange


async def run(plan: WorkerPlan) -> WorkerReport:
    exchange = Exchange(plan.protocol, plan.payload_kind, plan.payload_bytes)
    burst = int(plan.params["burst"])

    async def open_one(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> EchoConnection:
        return await connect(
            plan.url, exchange, tally, False, plan.connect_timeout_s,
            plan.payload_bytes + FRAME_SLACK_BYTES, local_addr,
        )  # fmt: skip

    async def drive(
        connections: list[EchoConnection], plan: WorkerPlan, tally: Tally, start_ns: int
    ) -> None:
        # Once, when the window opens: every connection's burst at once.
        await sleep_until(tally.window_start_ns)
        for connection in connections:
            for _ in range(burst):
                connection.send(monotonic_ns())
        await sleep_until(tally.window_end_ns)

    return await run_worker(plan, open_one, drive)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
