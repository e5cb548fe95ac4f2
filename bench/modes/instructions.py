"""Instructions per message and per connection, counted under callgrind: a cost that does
not move with a noisy host (bench.callgrind).

The server runs under callgrind with instrumentation off while a first, uncounted run warms
it up (the same set-ups and echoes). Then, counted: the counters are zeroed, ``connections``
are opened one at a time and the count read (``instructions_per_conn``: a connection's
set-up, handshake and Socket.IO namespace included); zeroed again, N echoes on one connection,
one in flight, read (the first pass); zeroed again, N more, read: ``instructions_per_msg`` is
this second count over N, with nothing opening or closing meanwhile (bench.load.
instructions_worker pauses between passes). ``instructions_first_pass_pct`` says how much more
the first pass cost. User-space instructions of the server process only: not the kernel's,
not waiting (docs/methodology.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

import psutil

from bench import callgrind
from bench.errors import RunFailed
from bench.load.stacks import FAST
from bench.modes import Metric, Mode, Option, ServerWrap, positive
from bench.processes import repo_root

if TYPE_CHECKING:
    from bench.runner import ManagedServer, Pinning, RunResult
    from bench.spec import RunSpec

DEFAULT_MESSAGES = 2_000
# Uncounted echoes first: Python's adaptive interpreter specialises hot code, caches fill.
WARMUP_MESSAGES = 100
# Seconds an echo may take under callgrind (about 50 times slower than without) before the
# run is bounded: a run of n messages may last n times this, plus its set-up.
ECHO_BOUND_S = 0.05
RUN_SLACK_S = 30.0
# After the workers closed, until the server holds none of their connections.
QUIET_TIMEOUT_S = 30.0
# Time model (wsbench run --scenario instructions, 2026-12-02: 56 s for the four servers at
# 500 messages): about 6.5 s a cell beyond its echoes (the start under valgrind and the
# fairness probe 2.9 s, the warm-up run 1 s, the counted worker's start 1 s, the stop 0.8 s,
# 1.5 s before instrumentation went off first), and echoes one in flight at about 40 million
# instructions a second of the server's. Since the counted server compiles every module from
# source (bench.callgrind.Layout), 2026-12-03: 79 s at 300 messages; with its modules
# compiled natively first (about 1.6 s a cell), 50 s on a quiet machine: about 8.1 s a cell.
START_S = 8.1
INSTRUCTIONS_PER_S = 40e6
PLANNED_PER_MSG = {"socketio": 400e3, "raw": 100e3}


def _wrapper(spec: RunSpec, log_dir: Path, own_server: bool) -> ServerWrap:
    log_dir.mkdir(parents=True, exist_ok=True)
    seed = {"PYTHONHASHSEED": callgrind.HASH_SEED}
    if not own_server:  # the user's command: its environment, seeded (it may not be Python)
        return ServerWrap(callgrind.wrapper(log_dir), seed)
    # The harness's own servers count alike from any checkout (bench.callgrind.Layout).
    layout = callgrind.Layout.make(repo_root())
    return ServerWrap(
        callgrind.wrapper(log_dir), layout.environment({}), python=layout.python,
        whole_env=True, cleanup=layout.remove, prepare=layout.compile,
    )  # fmt: skip


def _server_refused(spec: RunSpec) -> str:
    if spec.managed and spec.server.startswith("node-"):
        return (
            "Node's servers are not counted yet: their loop-lag timer always runs, and V8 "
            "compiles on background threads, work that grows with time, not with messages "
            "(callgrind does count V8's code: two runs of node-ws, 2,000 echoes, 0.2% apart)"
        )
    return ""


async def _quiet(pid: int, port: int) -> None:
    """Wait until the server process holds no established connection on ``port``."""
    deadline = monotonic_ns() + int(QUIET_TIMEOUT_S * 1e9)
    process = psutil.Process(pid)
    while monotonic_ns() < deadline:
        held = [
            c for c in process.net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
        ]  # fmt: skip
        if not held:
            return
        await asyncio.sleep(0.05)
    raise RunFailed(f"the server still held connections {QUIET_TIMEOUT_S:g} s after the run")


async def measure_instructions(
    spec: RunSpec, url: str, server: ManagedServer | None, server_pid: int | None,
    pinning: Pinning, log_dir: Path, result: RunResult,
) -> None:  # fmt: skip
    from bench.load.coordinator import WorkerPool
    from bench.runner import worker_plans

    if server is None or server.process is None:
        raise RunFailed("instructions are counted in a server the harness starts under callgrind")
    pid, port = server.process.pid, server.port
    messages = int(dict(spec.params).get("messages", DEFAULT_MESSAGES))

    async def one_run(n: int, name: str) -> list[Any]:
        bound_s = n * ECHO_BOUND_S + RUN_SLACK_S
        cell = replace(spec, warmup_s=0.0, duration_s=bound_s, params=(("messages", n),))
        plans = worker_plans(cell, url)
        pool = WorkerPool(
            plans, frozenset(pinning.generator_cpus), log_dir / name, module=spec.worker_module
        )
        try:
            result.connect_s = await pool.spawn_and_connect()
            await pool.go()
            reports = await pool.reports()
        finally:
            await pool.close()
        await _quiet(pid, port)
        return reports

    # Uncounted first: the same set-ups and echoes (instrumentation is still off).
    await one_run(WARMUP_MESSAGES, "warm-up")
    await callgrind.control(pid, "--instr=on")
    await callgrind.control(pid, "--zero")
    cell = replace(
        spec, warmup_s=0.0, duration_s=2 * messages * ECHO_BOUND_S + RUN_SLACK_S,
        params=(("messages", messages), ("phases", 2)),
    )  # fmt: skip
    (plan,) = worker_plans(cell, url)
    # One set-up at a time: concurrent handshakes would interleave in the server's loop
    # differently from run to run, and so would its count.
    plan = replace(plan, connect_concurrency=1)
    pool = WorkerPool([plan], frozenset(pinning.generator_cpus), log_dir / "counted",
                      module=spec.worker_module)  # fmt: skip
    phase_s = messages * ECHO_BOUND_S + RUN_SLACK_S
    try:
        result.connect_s = await pool.spawn_and_connect()
        setup = await callgrind.dump_total(pid, log_dir)  # the set-ups alone
        await callgrind.control(pid, "--zero")
        await pool.go()
        await pool.event("phase", phase_s)
        first = await callgrind.dump_total(pid, log_dir)  # N echoes, just after the set-ups
        await callgrind.control(pid, "--zero")
        await pool.tell("NEXT")
        await pool.event("phase", phase_s)
        second = await callgrind.dump_total(pid, log_dir)  # N more: the figure
        await pool.tell("NEXT")
        result.reports = await pool.reports()
    finally:
        await pool.close()
    # Instrumentation off: the stop's own dump then has nothing new to write.
    await callgrind.control(pid, "--instr=off")
    result.instructions = (messages, setup, first, second)
    result.valgrind_version = await callgrind.version()


def _columns(result: RunResult) -> dict[str, Any]:
    if not result.instructions:
        return {"valgrind_version": result.valgrind_version}
    messages, setup, first, second = result.instructions
    return {
        "instructions_per_msg": round(second / messages, 1),
        "instructions_per_conn": round(setup / result.spec.connections, 1),
        "instructions_total": second,
        "instructions_messages": messages,
        # The first N echoes beside the second: how far the count still settles.
        "instructions_first_pass_pct": round(100 * (first - second) / second, 3),
        "valgrind_version": result.valgrind_version,
    }


def _check_result(spec: RunSpec, result: RunResult) -> str:
    expected = 2 * int(dict(spec.params).get("messages", DEFAULT_MESSAGES))  # two phases
    got = sum(r.received for r in result.reports)
    if result.reports and got != expected:
        return f"{got:,} of {expected:,} counted echoes came back: the count is not per message"
    return ""


def _time_s(cell: RunSpec, servers: int) -> float:
    messages = int(dict(cell.params).get("messages", DEFAULT_MESSAGES))
    echoes = WARMUP_MESSAGES + 2 * messages
    return START_S + echoes * PLANNED_PER_MSG[cell.protocol] / INSTRUCTIONS_PER_S


def _verdict(summary: Any) -> Any:
    from bench.report.instructions import verdict

    return verdict(summary)


def _chart(runs: Any, summary: Any) -> Any:
    from bench.report.instructions import chart

    return chart(runs, summary)


def _progress(record: Mapping[str, Any]) -> str:
    per_msg, per_conn = record["instructions_per_msg"], record["instructions_per_conn"]
    if isinstance(per_msg, float) and math.isnan(per_msg):
        return "no count"
    return (
        f"{per_msg:>11,.0f} instructions per message  {per_conn:>11,.0f} per connection "
        f"(callgrind, {record['instructions_messages']:,} messages)"
    )


MODE = Mode(
    name="instructions",
    scenario="instructions",
    help="instructions (the server under callgrind: user-space instructions per message over "
    "--messages echoes, one in flight, and per connection over --connections)",
    stack=(FAST, "bench.load.instructions_worker"),
    options=(
        Option(
            "messages",
            "--messages",
            f"instructions: counted echoes (default {DEFAULT_MESSAGES:,}; the run counts "
            "twice as many again to cancel fixed costs)",
            lambda v, n: int(positive(v, n)),
            type=int,
            default=DEFAULT_MESSAGES,
        ),
    ),
    refuses=("workers", "inflight", "ack", "polling", "slice"),
    refusal="counts one message in flight over WebSocket from one worker",
    target_refused="callgrind must start the server: give its command with --server-cmd",
    throughput=False,
    default_warmup_s=0.0,
    server_wrapper=_wrapper,
    missing=callgrind.missing_reason,
    server_refused=_server_refused,
    run=measure_instructions,
    check_result=_check_result,
    columns=(
        "instructions_per_msg",
        "instructions_per_conn",
        "instructions_total",
        "instructions_messages",
        "instructions_first_pass_pct",
        "valgrind_version",
    ),
    text_columns=("valgrind_version",),
    fill=_columns,
    metrics=(
        Metric("instructions_per_msg", "instructions_per_msg", "lower", deterministic=True),
        Metric("instructions_per_conn", "instructions_per_conn", "lower", deterministic=True),
    ),
    headline="instructions_per_msg",
    time_s=_time_s,
    progress=_progress,
    verdict=_verdict,
    chart=_chart,
)
