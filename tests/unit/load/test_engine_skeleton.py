"""The worker skeleton (``bench.load.engine.run_worker``) with stand-in hooks (no sockets): the
order of its steps, the "connected" event, the window, and closing whatever happens."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from time import monotonic_ns
from typing import Any

import pytest
import uvloop

from bench.load.engine import WorkerFailed, WorkerHooks, WorkerRun, no_window, run_worker
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.schedule import NS_PER_S

START_DELAY_NS = 20_000_000
TIMER_RESOLUTION_NS = 1_000_000


class StandIn:
    """A connection that sends nothing: the accounting ``Connection`` asks for."""

    def __init__(self) -> None:
        self.outstanding: dict[Any, int] = {}
        self.sent = self.received = self.unexpected = self.next_seq = 0
        self.disconnected = False
        self.window: tuple[int, int] | None = None
        self.closed = False

    def start_window(self, start_ns: int, end_ns: int) -> None:
        self.window = (start_ns, end_ns)

    def window_outstanding(self) -> int:
        return 0

    async def close(self, timeout_s: float) -> None:
        self.closed = True


def plan(**changes: Any) -> WorkerPlan:
    fields: dict[str, Any] = {
        "url": "ws://127.0.0.1:9/", "protocol": "raw", "mode": "closed", "connections": 3,
        "payload_bytes": 32, "payload_kind": "text", "warmup_s": 0.5, "duration_s": 1.0,
    }  # fmt: skip
    fields.update(changes)
    return WorkerPlan(**fields)


def run_with_go(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], hooks: Any, **changes: Any
) -> tuple[WorkerReport, list[dict[str, Any]], int]:
    start_ns = monotonic_ns() + START_DELAY_NS
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"GO {start_ns}\n"))
    report = uvloop.run(run_worker(plan(**changes), hooks))
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return report, events, start_ns


def test_the_default_hooks_open_announce_window_drive_and_close(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[StandIn] = []
    seen: dict[str, Any] = {}

    async def connect(plan: WorkerPlan, tally: Any, local_addr: Any) -> StandIn:
        opened.append(StandIn())
        return opened[-1]

    async def drive(run: WorkerRun[StandIn]) -> None:
        seen["woke_ns"] = monotonic_ns()
        seen["window"] = (run.tally.window_start_ns, run.tally.window_end_ns)

    hooks = WorkerHooks(connect=connect, drive=drive)
    report, events, start_ns = run_with_go(monkeypatch, capsys, hooks)
    assert [e["event"] for e in events] == ["connected"]
    assert events[0]["connections"] == 3
    # The drive begins at the start time, not at the signal (the loop's timers have a
    # resolution of a millisecond).
    assert seen["woke_ns"] >= start_ns - TIMER_RESOLUTION_NS
    window_start = start_ns + int(0.5 * NS_PER_S)
    assert seen["window"] == (window_start, window_start + NS_PER_S)
    assert all(c.window == seen["window"] and c.closed for c in opened)
    assert report.connections == 3
    assert report.wire_messages == 0


def test_connections_a_drive_opens_are_closed_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    late = StandIn()

    async def open_nothing(run: WorkerRun[StandIn]) -> int:
        return 0

    async def drive(run: WorkerRun[StandIn]) -> None:
        run.connections.append(late)
        raise WorkerFailed("the drive gave up")

    hooks = WorkerHooks(open=open_nothing, start=no_window, drive=drive)
    with pytest.raises(WorkerFailed, match="gave up"):
        run_with_go(monkeypatch, capsys, hooks)
    assert late.closed


def test_the_report_hook_turns_the_echo_report_into_the_modes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def announce_five(run: WorkerRun[StandIn]) -> int:
        run.connect_s = 0.25
        return 5

    async def drive(run: WorkerRun[StandIn]) -> None:
        run.connect_failures = 2

    def mark(run: WorkerRun[StandIn], report: WorkerReport) -> WorkerReport:
        return replace(report, lost=7)

    hooks = WorkerHooks(open=announce_five, start=no_window, drive=drive, report=mark)
    report, events, _ = run_with_go(monkeypatch, capsys, hooks)
    assert events == [{"event": "connected", "connections": 5, "connect_s": 0.25}]
    assert (report.connect_failures, report.connect_s, report.lost) == (2, 0.25, 7)


def test_hooks_take_a_connect_or_an_open() -> None:
    async def drive(run: WorkerRun[StandIn]) -> None:
        pass

    with pytest.raises(TypeError):
        WorkerHooks(drive=drive)
