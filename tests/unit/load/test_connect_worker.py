"""The connect storm's logic against stand-in connections (no sockets): which attempts a
worker makes, pacing, the full-speed concurrency bound, failures and the storm's time limit."""

from __future__ import annotations

import asyncio
from time import monotonic_ns
from typing import Any, cast

import pytest
import uvloop

from bench.load.client import EchoConnection, Tally
from bench.load.connect_worker import Storm, attempt_indices, intended_start_ns, storm_wire_counts
from bench.load.plan import WorkerPlan
from bench.metrics.wire import WireBytes

START_DELAY_NS = 20_000_000


class StandIn:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, t_ns: int) -> None:
        self.sent.append(t_ns)


def plan(**changes: Any) -> WorkerPlan:
    fields: dict[str, Any] = {
        "url": "ws://127.0.0.1:9/", "protocol": "raw", "mode": "connect", "connections": 12,
        "payload_bytes": 32, "payload_kind": "text", "warmup_s": 0.0, "duration_s": 5.0,
        "connect_timeout_s": 2.0,
    }  # fmt: skip
    fields.update(changes)
    return WorkerPlan(**fields)


def run_storm(storm: Storm) -> int:
    async def main() -> int:
        start_ns = monotonic_ns() + START_DELAY_NS
        await storm.run(start_ns)
        return start_ns

    return uvloop.run(main())


def test_workers_interleave_and_together_make_every_attempt_once() -> None:
    shares = [list(attempt_indices(w, 3, n)) for w, n in enumerate([4, 4, 3])]
    assert shares[1] == [1, 4, 7, 10]
    assert sorted(i for share in shares for i in share) == list(range(11))


def test_fixed_rate_attempts_are_due_at_their_intended_times() -> None:
    assert intended_start_ns(1_000, 200.0, 0) == 1_000
    assert intended_start_ns(1_000, 200.0, 3) == 1_000 + 15_000_000


def test_a_paced_storm_starts_no_attempt_before_it_is_due() -> None:
    started: dict[int, int] = {}

    async def opener(index: int) -> EchoConnection:
        started[index] = monotonic_ns()
        return cast(EchoConnection, StandIn())

    tally = Tally()
    storm = Storm(plan(connections=10, rate_conns_s=500.0), tally, opener)
    start_ns = run_storm(storm)
    assert sorted(started) == list(range(10))
    for index, at in started.items():
        assert at >= intended_start_ns(start_ns, 500.0, index)
    assert storm.failures == 0 and len(storm.opened) == 10
    storm.setup.flush()
    assert storm.setup.histogram.get_total_count() == 10
    tally.send_lag.flush()
    assert tally.send_lag.histogram.get_total_count() == 10  # one lateness per attempt
    # Each opened connection sends its one first message.
    assert all(len(cast(StandIn, c).sent) == 1 for c in storm.opened)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_full_speed_keeps_at_most_the_allowed_set_ups_under_way(concurrency: int) -> None:
    under_way = 0
    most = 0

    async def opener(index: int) -> EchoConnection:
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        await asyncio.sleep(0.002)
        under_way -= 1
        return cast(EchoConnection, StandIn())

    storm = Storm(plan(connections=12, connect_concurrency=concurrency), Tally(), opener)
    run_storm(storm)
    assert most == concurrency
    assert len(storm.opened) == 12 and storm.failures == 0


def test_failed_attempts_are_counted_and_described() -> None:
    async def opener(index: int) -> EchoConnection:
        if index % 3 == 0:
            raise ConnectionRefusedError("refused")
        return cast(EchoConnection, StandIn())

    tally = Tally()
    storm = Storm(plan(connections=9), tally, opener)
    run_storm(storm)
    assert storm.failures == 3 and len(storm.opened) == 6
    storm.setup.flush()
    assert storm.setup.histogram.get_total_count() == 6
    assert any("refused" in sample for sample in tally.error_samples)


def test_attempts_unfinished_at_the_time_limit_fail_and_the_storm_ends_on_time() -> None:
    async def opener(index: int) -> EchoConnection:
        if index >= 2:
            await asyncio.sleep(60)  # a server that never answers
        return cast(EchoConnection, StandIn())

    tally = Tally()
    storm = Storm(plan(connections=6, duration_s=0.2, connect_timeout_s=30.0), tally, opener)
    began = monotonic_ns()
    run_storm(storm)
    assert (monotonic_ns() - began) / 1e9 < 5.0  # bounded by the limit, not the timeout
    assert len(storm.opened) == 2 and storm.failures == 4
    assert any("unfinished" in sample for sample in tally.error_samples)


def test_a_paced_storm_longer_than_its_limit_counts_attempts_never_made() -> None:
    async def opener(index: int) -> EchoConnection:
        return cast(EchoConnection, StandIn())

    # 20 attempts at 50/s need 0.4 s; the limit is 0.1 s.
    storm = Storm(plan(connections=20, rate_conns_s=50.0, duration_s=0.1), Tally(), opener)
    run_storm(storm)
    assert len(storm.opened) + storm.failures == 20
    assert storm.failures >= 10


class FakeSocket:
    """Answers TCP_INFO with the two byte counters at their offsets (bench.metrics.wire)."""

    def __init__(self, up: int, down: int) -> None:
        self.raw = bytearray(256)
        self.raw[120:128] = up.to_bytes(8, "little")
        self.raw[128:136] = down.to_bytes(8, "little")

    def getsockopt(self, level: int, option: int, buflen: int) -> bytes:
        return bytes(self.raw)


class Counted:
    def __init__(self, up: int, down: int, earlier: WireBytes | None, requests: int | None):
        self.sock = FakeSocket(up, down)
        self.earlier_wire = earlier
        self.http_requests = requests
        self.next_seq = 1

    def tcp_sockets(self) -> list[FakeSocket]:
        return [self.sock]


def test_storm_wire_counts_add_the_polling_get_to_the_websockets_bytes() -> None:
    connections = [Counted(200, 300, WireBytes(150, 250), 1), Counted(210, 310, WireBytes(0, 0), 1)]
    counts = storm_wire_counts(cast(list[EchoConnection], connections))
    assert counts == {
        "wire_messages": 2, "wire_bytes_up": 560, "wire_bytes_down": 860, "http_requests": 2,
    }  # fmt: skip
    # One unreadable GET makes the total unknown rather than short.
    connections[0].earlier_wire = None
    counts = storm_wire_counts(cast(list[EchoConnection], connections))
    assert counts["wire_bytes_up"] is None and counts["wire_bytes_down"] is None
