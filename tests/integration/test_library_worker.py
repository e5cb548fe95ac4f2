"""The library-client worker (``python -m bench.load.library_worker``) against real servers:
the worker protocol, closed and open loop, binary and acks over Socket.IO, and failing fast."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from bench.load.plan import WorkerPlan
from bench.metrics import histogram as hist
from bench.target import websocket_url
from tests.conftest import REPO_ROOT, TIME_FACTOR, read_stdout_line, stop_process

pytestmark = pytest.mark.integration

SERVER_PROTOCOLS = {"websockets": "raw", "socketio_aiohttp": "socketio"}
START_DELAY_NS = 300_000_000
EVENT_GRACE_S = 15.0 * TIME_FACTOR
LOOP = "uvloop"

StartServer = Callable[[str, str], int]


def make_plan(port: int, protocol: str, **changes: Any) -> WorkerPlan:
    plan = WorkerPlan(
        url=websocket_url(f"ws://127.0.0.1:{port}/", protocol),
        protocol="socketio" if protocol == "socketio" else "raw",
        mode="closed",
        connections=2,
        payload_bytes=64,
        payload_kind="text",
        warmup_s=0.3,
        duration_s=1.0,
        inflight=2,
        connect_timeout_s=2.0 * TIME_FACTOR,
        drain_timeout_s=2.0 * TIME_FACTOR,
    )
    return replace(plan, **changes)


def read_event(process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    """The worker's next stdout line as JSON, within ``timeout_s``."""
    event: dict[str, Any] = json.loads(read_stdout_line(process, timeout_s, "event"))
    return event


@contextmanager
def library_worker(
    plan: WorkerPlan, module: str = "bench.load.library_worker"
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker as a child process, given ``plan``; always stopped when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        process.stdin.write(plan.to_json().encode() + b"\n")
        process.stdin.flush()
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop_process(process)


def run_worker(plan: WorkerPlan) -> dict[str, Any]:
    """Run one worker through connect, GO and report; returns the report's fields."""
    with library_worker(plan) as process:
        connected = read_event(process, plan.connect_timeout_s + EVENT_GRACE_S)
        assert connected["event"] == "connected", connected
        assert connected["connections"] == plan.connections
        assert process.stdin is not None
        process.stdin.write(f"GO {time.monotonic_ns() + START_DELAY_NS}\n".encode())
        process.stdin.flush()
        budget_s = plan.warmup_s + plan.duration_s + plan.drain_timeout_s + EVENT_GRACE_S
        report = read_event(process, budget_s)
        assert report.pop("event") == "report", report
        assert process.wait(timeout=EVENT_GRACE_S) == 0
    return report


def assert_clean(report: dict[str, Any]) -> None:
    assert report["missing"] == 0, report["error_samples"]
    assert report["unexpected"] == 0, report["error_samples"]
    assert report["disconnects"] == 0, report["error_samples"]
    assert report["sent"] == report["received"] > 0
    assert hist.decode(report["latency_hist"]).get_total_count() == report["received"]


@pytest.mark.parametrize("server", SERVER_PROTOCOLS)
def test_closed_loop_echoes_every_text_message(start_server: StartServer, server: str) -> None:
    port = start_server(server, LOOP)
    report = run_worker(make_plan(port, SERVER_PROTOCOLS[server]))
    assert_clean(report)
    assert report["connections"] == 2
    assert hist.decode(report["connect_hist"]).get_total_count() == 2


@pytest.mark.parametrize("server", SERVER_PROTOCOLS)
def test_open_loop_sends_exactly_the_schedule(start_server: StartServer, server: str) -> None:
    port = start_server(server, LOOP)
    plan = make_plan(port, SERVER_PROTOCOLS[server], mode="open", rate_msgs_s=200.0, warmup_s=0.0)
    report = run_worker(plan)
    assert_clean(report)
    assert report["sent"] == 200
    assert hist.decode(report["send_lag_hist"]).get_total_count() == 200


@pytest.mark.parametrize(
    ("payload_kind", "ack"), [("binary", False), ("binary", True), ("text", True)]
)
def test_socketio_binary_and_acks(start_server: StartServer, payload_kind: str, ack: bool) -> None:
    port = start_server("socketio_aiohttp", LOOP)
    report = run_worker(make_plan(port, "socketio", payload_kind=payload_kind, ack=ack))
    assert_clean(report)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("protocol", ["raw", "socketio"])
def test_unreachable_server_fails_fast(protocol: str) -> None:
    plan = make_plan(unused_port(), protocol)
    started = time.monotonic()
    with library_worker(plan) as process:
        failed = read_event(process, plan.connect_timeout_s + EVENT_GRACE_S)
        assert failed["event"] == "failed", failed
        assert "failed" in failed["message"]
        assert process.wait(timeout=EVENT_GRACE_S) == 3
    assert time.monotonic() - started < plan.connect_timeout_s + EVENT_GRACE_S


@pytest.mark.parametrize("module", ["bench.load.worker", "bench.load.library_worker"])
def test_source_addresses_spread_client_sockets(start_server: StartServer, module: str) -> None:
    import psutil

    port = start_server("websockets", "uvloop")
    sources = ("127.0.0.2", "127.0.0.3")
    plan = make_plan(port, "raw", connections=4, source_addresses=sources)
    with library_worker(plan, module) as process:
        connected = read_event(process, plan.connect_timeout_s + EVENT_GRACE_S)
        assert connected["event"] == "connected", connected
        local = {c.laddr.ip for c in psutil.Process(process.pid).net_connections("tcp")
                 if c.raddr and c.raddr.port == port}  # fmt: skip
    assert local == set(sources)
