"""The coordinator against workers that die or hang: a clear failure, in bounded time, and no
process left behind."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.errors import RunFailed
from bench.load.coordinator import WorkerPool
from bench.load.plan import WorkerPlan

pytestmark = pytest.mark.integration

TIME_FACTOR = float(os.environ.get("WSBENCH_TIME_FACTOR", "1"))
PLAN = WorkerPlan(url="ws://127.0.0.1:9/", protocol="raw", mode="closed", connections=1,
                  payload_bytes=32, payload_kind="text", warmup_s=0.1, duration_s=0.2,
                  drain_timeout_s=0.1)  # fmt: skip


def children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


async def run_pool(pool: WorkerPool) -> None:
    try:
        await pool.spawn_and_connect()
        await pool.go()
        await pool.reports()
    finally:
        await pool.close()


def module_argv_patch(monkeypatch: pytest.MonkeyPatch, behaviour: str) -> None:
    # The fake worker takes its behaviour as an argument; python_argv builds the command line.
    from bench.load import coordinator

    monkeypatch.setattr(
        coordinator, "python_argv",
        lambda module: [sys.executable, "-m", "tests.integration.fake_worker", behaviour],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("dies", r"generator worker [01] exited with status 7"),
     ("hangs", "did not report 'report' within")],
)  # fmt: skip
def test_a_dead_or_hung_worker_fails_the_run_and_is_stopped(
    behaviour: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_argv_patch(monkeypatch, behaviour)
    before = {p.pid for p in children()}
    pool = WorkerPool([PLAN, PLAN], frozenset(), tmp_path, grace_s=1.0 * TIME_FACTOR)
    started = time.monotonic()
    with pytest.raises(RunFailed, match=message):
        asyncio.run(run_pool(pool))
    assert time.monotonic() - started < 15 * TIME_FACTOR
    assert {p.pid for p in children()} - before == set()


def test_a_dead_worker_fails_every_server_of_a_time_sliced_run_and_stops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.runner import Pinning, run_sliced
    from bench.spec import RunSpec

    module_argv_patch(monkeypatch, "dies")
    cells = [
        RunSpec(scenario="echo", server=server, protocol="raw", loop="uvloop", mode="closed",
                connections=2, payload_bytes=32, payload_kind="text", warmup_s=0.1,
                duration_s=0.4, slice_s=0.1)
        for server in ("websockets", "aiohttp")
    ]  # fmt: skip
    before = {p.pid for p in children()}
    results = asyncio.run(run_sliced(cells, ["r1", "r2"], tmp_path, Pinning((), ())))
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("exited with status 7" in r.failure for r in results)
    # The servers started (the fairness probe saw them) and were stopped cleanly.
    assert all(r.probe is not None and r.server_exit_status == 0 for r in results)
    assert {p.pid for p in children()} - before == set()


def test_workers_started_before_their_plans_get_them_and_a_count_mismatch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started beside the server (bench.runner.spawned_pool), given plans once its port is known.
    module_argv_patch(monkeypatch, "dies")  # reads its plan, then exits with status 7
    before = {p.pid for p in children()}
    pool = WorkerPool([], frozenset(), tmp_path, grace_s=1.0 * TIME_FACTOR, count=2)

    async def spawn_then_plan(plans: list[WorkerPlan]) -> None:
        await pool.spawn()
        assert len(pool.pids) == 2 and all(psutil.pid_exists(pid) for pid in pool.pids)
        pool.plans = plans
        await run_pool(pool)

    # The processes waited for their plans: they read them, then died as this worker does.
    with pytest.raises(RunFailed, match=r"generator worker [01] exited with status 7"):
        asyncio.run(spawn_then_plan([PLAN, PLAN]))
    pool = WorkerPool([], frozenset(), tmp_path, grace_s=1.0 * TIME_FACTOR, count=2)
    with pytest.raises(RunFailed, match="1 worker plans for 2 worker processes"):
        asyncio.run(spawn_then_plan([PLAN]))
    assert {p.pid for p in children()} - before == set()
