"""Broadcast fan-out: ``python -m bench.load.fanout_worker``.

The worker opens ``plan.connections`` receivers (raw: WebSockets to the servers' fan-out path;
Socket.IO: clients that join the fan-out room and wait for the join's acknowledgement) and one
publisher (raw: the publish path; Socket.IO: a client emitting the publish event). After the
start signal the publisher sends timestamped messages at ``plan.rate_msgs_s`` on an open-loop
schedule; the server broadcasts each to every receiver. Every delivery is checked byte for
byte and counted per receiver (``bench.load.fanout``), and timed from the message's intended
publish time. After the schedule the worker waits, within the drain timeout, for deliveries
still on their way.

The connections are the fast worker's picows client; all run in one process (one core), so
``plan.workers`` must be 1 and rows flag the generator as client_bound when it lagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import replace
from time import monotonic_ns
from typing import Any

from picows import WSFrame, WSTransport

from bench.load.alarm import Alarm
from bench.load.client import BINARY, TEXT, EchoConnection, Tally, connect
from bench.load.engine import (
    FRAME_SLACK_BYTES,
    WorkerFailed,
    WorkerHooks,
    WorkerRun,
    close_all,
    no_window,
    open_connections,
    run_worker,
    worker_main,
)
from bench.load.fanout import FanoutBook
from bench.load.plan import WorkerPlan, WorkerReport
from bench.load.recorder import LatencyRecorder
from bench.load.schedule import NS_PER_S, constant_rate
from bench.metrics import histogram as hist
from bench.protocol import socketio as sio
from bench.protocol.exchange import Exchange, FrameBuilder
from servers.common import FAIRNESS, parse_worker_announcement

# Socket.IO: the join event with ack id 1, and the acknowledgement that confirms it.
JOIN_FRAME = f'421["{FAIRNESS.socketio_join_event}",null]'.encode()
JOIN_ACK = b"431[true]"
# Scale-out (several server processes, servers.common): the process a connection is on. Raw
# servers say it in the first frame of a fan-out or publish connection; Socket.IO servers in
# the acknowledgement of the join (receivers) or of the worker event (the publisher).
WORKER_FRAME = f'421["{FAIRNESS.socketio_worker_event}",null]'.encode()
ACK_PREFIX, ACK_SUFFIX = b"431[", b"]"
DRAIN_POLL_S = 0.01
# Slow receivers read for SLOW_READ_S every SLOW_PERIOD_S: a client on a poor link that
# catches up in short bursts.
SLOW_PERIOD_S = 0.5
SLOW_READ_S = 0.01
PING = sio.EIO_PING.encode()


def fanout_urls(url: str, protocol: str) -> tuple[str, str]:
    """The receivers' and the publisher's URLs, from the echo URL the harness gives."""
    if protocol == "socketio":
        return url, url
    base = url.rstrip("/")
    return base + FAIRNESS.fanout_path, base + FAIRNESS.publish_path


def announced_worker(data: bytes, socketio: bool) -> int | None:
    """The server process a scale-out announcement names (``worker K``, or Socket.IO's
    ``431[K]``), or None when ``data`` is not one."""
    if not socketio:
        return parse_worker_announcement(data)
    if not (data.startswith(ACK_PREFIX) and data.endswith(ACK_SUFFIX)):
        return None
    number = data[len(ACK_PREFIX) : -len(ACK_SUFFIX)]
    return int(number) if number.isdigit() else None


class Receiver(EchoConnection):
    """A connection that only receives broadcasts: every frame after the join goes to the
    book, under this receiver's number. With ``expects_worker`` (scale-out) it is joined once
    the server said which of its processes the connection is on (``worker``)."""

    book: FanoutBook
    number = 0
    expects_worker = False

    def __init__(
        self, exchange: Exchange, tally: Tally, closed_loop: bool, upgrade: bool = False
    ) -> None:
        super().__init__(exchange, tally, closed_loop, upgrade)
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.worker = -1
        if not self.socketio and not self.expects_worker:
            self.joined.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic_ns()
        data = frame.get_payload_as_bytes()
        if self.joined.done():
            kind = frame.msg_type
            if kind is TEXT and not (self.socketio and data == PING):
                self.book.deliver(self.number, data, now)
            elif kind is TEXT or kind is BINARY:  # a heartbeat, or a message in the wrong kind
                self._not_an_echo(kind, data)
            return  # control frames: picows answers pings; a close ends the connection
        self.frames_received += 1
        if self.handshake_step < 2:
            self._not_an_echo(frame.msg_type, data)
        elif not self.expects_worker and data == JOIN_ACK:
            self.joined.set_result(None)
        elif self.expects_worker and (worker := announced_worker(data, self.socketio)) is not None:
            # (A raw server's announcement may come before the book is handed over.)
            self.worker = worker
            self.joined.set_result(None)
        else:
            self._not_an_echo(frame.msg_type, data)

    def join(self) -> None:
        if self.socketio:
            self.transport.send(TEXT, JOIN_FRAME)  # type: ignore[union-attr]


class AnnouncedReceiver(Receiver):
    """A receiver of a server with several processes (scale-out)."""

    expects_worker = True


class Publisher(EchoConnection):
    """Scale-out: the publishing connection, which first learns its server process (raw: the
    publish path's first frame; Socket.IO: the worker event's acknowledgement). It receives
    nothing else: any other frame is refused as for every publisher."""

    def __init__(
        self, exchange: Exchange, tally: Tally, closed_loop: bool, upgrade: bool = False
    ) -> None:
        super().__init__(exchange, tally, closed_loop, upgrade)
        self.known: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        data = frame.get_payload_as_bytes()
        if self.handshake_step >= 2 and not self.known.done():
            worker = announced_worker(data, self.socketio)
            if worker is not None:
                self.frames_received += 1
                self.known.set_result(worker)
                return
        super().on_ws_frame(transport, frame)

    def ask(self) -> None:
        if self.socketio:
            self.transport.send(TEXT, WORKER_FRAME)  # type: ignore[union-attr]


async def run(plan: WorkerPlan) -> WorkerReport:
    if plan.worker_count != 1 or plan.payload_kind != "text" or plan.mode != "fanout":
        raise WorkerFailed("fan-out runs one worker, text payloads, at a fixed publish rate")
    receiver_url, publisher_url = fanout_urls(plan.url, plan.protocol)
    receive = Exchange(
        plan.protocol, "text", plan.payload_bytes, event=FAIRNESS.socketio_fanout_event
    )
    publish = Exchange(
        plan.protocol, "text", plan.payload_bytes, event=FAIRNESS.socketio_publish_event
    )
    prefix = b'42["' + FAIRNESS.socketio_fanout_event.encode() + b'","'
    slow = math.ceil(plan.slow_share * plan.connections)
    book = FanoutBook(
        plan.connections, seq_offset=len(prefix) if plan.protocol == "socketio" else 0,
        slow=slow,
    )  # fmt: skip
    max_frame_bytes = plan.payload_bytes + FRAME_SLACK_BYTES
    numbers = iter(range(plan.connections))
    scale_out = plan.server_workers > 1

    async def open_receiver(
        plan: WorkerPlan, tally: Tally, local_addr: tuple[str, int] | None
    ) -> Receiver:
        receiver = await connect(
            receiver_url, receive, tally, False, plan.connect_timeout_s, max_frame_bytes,
            local_addr, listener_class=AnnouncedReceiver if scale_out else Receiver,
        )  # fmt: skip
        assert isinstance(receiver, Receiver)
        receiver.book, receiver.number = book, next(numbers)
        receiver.join()
        await asyncio.wait_for(receiver.joined, plan.connect_timeout_s)
        book.workers[receiver.number] = receiver.worker
        return receiver

    publisher: EchoConnection | None = None

    async def open_receivers_then_publisher(run: WorkerRun[EchoConnection]) -> int:
        nonlocal publisher
        receivers, run.connect_times, run.connect_s = await open_connections(
            run.plan, run.tally, open_receiver
        )
        run.connections.extend(receivers)
        publisher = await connect(
            publisher_url, publish, run.tally, False, plan.connect_timeout_s, max_frame_bytes,
            listener_class=Publisher if scale_out else EchoConnection,
        )  # fmt: skip
        run.connections.append(publisher)  # closed with the receivers; not announced
        if isinstance(publisher, Publisher):
            publisher.ask()
            book.publisher_worker = await asyncio.wait_for(publisher.known, plan.connect_timeout_s)
        return len(receivers)

    def receivers_of(run: WorkerRun[EchoConnection]) -> list[Receiver]:
        return [c for c in run.connections if isinstance(c, Receiver)]

    async def publish_with_slow_readers(run: WorkerRun[EchoConnection]) -> None:
        assert publisher is not None
        slow_readers = [r for r in receivers_of(run) if r.number < slow]
        throttle = asyncio.ensure_future(read_slowly(slow_readers))
        try:
            await publish_all(run.plan, publisher, book, run.tally, run.start_ns, receive)
        finally:
            throttle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await throttle

    async def drain_deliveries(run: WorkerRun[EchoConnection]) -> dict[str, Any]:
        await drain(book, run.plan.drain_timeout_s)
        return {}

    async def close_quietly(run: WorkerRun[EchoConnection]) -> None:
        # Connections that do not close in time are not noted: a slow receiver may still be
        # reading its backlog when the run closes it.
        await close_all(run.connections)

    def deliveries_report(run: WorkerRun[EchoConnection], echoes: WorkerReport) -> WorkerReport:
        # Counted per delivery in the book, not per echo: the echo report is not used.
        connections, receivers = run.connections, receivers_of(run)
        # A slow receiver the server dropped is the scenario's finding, not an error.
        dropped = sum(r.disconnected for r in receivers if r.number < slow)
        disconnects = sum(c.disconnected for c in connections) - dropped
        # Frames the connections refused themselves (wrong kind, anything sent to the publisher).
        refused = sum(c.unexpected for c in connections)
        report = fanout_report(
            run.plan, book, run.tally, run.connect_times, run.connect_s, disconnects, refused
        )
        if not slow:
            return report
        slow_counts = book.counts_summary(slow=True)
        return replace(
            report, slow_receivers=slow, slow_delivered=slow_counts.delivered,
            slow_missing=slow_counts.missing, slow_dropped=dropped,
        )  # fmt: skip

    hooks = WorkerHooks(
        open=open_receivers_then_publisher, start=no_window, drive=publish_with_slow_readers,
        finish=drain_deliveries, close=close_quietly, report=deliveries_report,
    )  # fmt: skip
    return await run_worker(plan, hooks)


async def publish_all(
    plan: WorkerPlan, publisher: EchoConnection, book: FanoutBook, tally: Tally, start_ns: int,
    receive: Exchange,
) -> None:  # fmt: skip
    """Publish on the open-loop schedule; each message registered in the book before it
    leaves (with the frame receivers must get)."""
    schedule = constant_rate(start_ns, plan.rate_msgs_s, plan.warmup_s + plan.duration_s)
    window_start = start_ns + int(plan.warmup_s * NS_PER_S)
    book.first_measured = schedule.count
    build_sent = FrameBuilder(publisher.exchange).body_and_reply
    build_expected = FrameBuilder(receive).body_and_reply
    transport = publisher.transport
    assert transport is not None
    alarm = Alarm()
    try:
        for seq in range(schedule.count):
            intended = schedule.intended_ns(seq)
            await alarm.sleep_until(intended)
            if intended >= window_start:
                book.first_measured = min(book.first_measured, seq)
                tally.send_lag.append(monotonic_ns() - intended)
            sent, _ = build_sent(seq, intended)
            book.publish(seq, intended, build_expected(seq, intended)[0])
            transport.send(TEXT, sent)
    finally:
        alarm.close()


async def read_slowly(receivers: list[Receiver]) -> None:
    """Keep these receivers' sockets unread but for short bursts, until cancelled; then they
    read freely again (and catch up during the drain)."""
    transports = [r.transport.underlying_transport for r in receivers if r.transport is not None]
    try:
        while True:
            for transport in transports:
                transport.pause_reading()
            await asyncio.sleep(SLOW_PERIOD_S)
            for transport in transports:
                transport.resume_reading()
            await asyncio.sleep(SLOW_READ_S)
    finally:
        for transport in transports:
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.resume_reading()


async def drain(book: FanoutBook, timeout_s: float) -> None:
    """Wait until every receiver has every message, or ``timeout_s`` has passed."""
    deadline = monotonic_ns() + int(timeout_s * NS_PER_S)
    while monotonic_ns() < deadline and (
        book.counts_summary().missing or book.counts_summary(slow=True).missing
    ):
        await asyncio.sleep(DRAIN_POLL_S)


def _histogram(values_ns: list[int]) -> str:
    recorder = LatencyRecorder()
    for value in values_ns:
        recorder.append(value)
    recorder.flush()
    return hist.encode(recorder.histogram)


def fanout_report(
    plan: WorkerPlan, book: FanoutBook, tally: Tally, connect_times: LatencyRecorder,
    connect_s: float, disconnects: int, refused: int,
) -> WorkerReport:  # fmt: skip
    counts = book.counts_summary()
    tally.send_lag.flush()
    first, median, last = book.per_message_ns()
    if counts.unexpected:
        tally.note_error(f"{counts.unexpected} frames matched no published message")
    fields: dict[str, Any] = {
        "worker_index": plan.worker_index,
        "connections": plan.connections,
        "sent": counts.published,
        "received": counts.delivered,
        "missing": counts.missing,
        "unexpected": counts.unexpected + refused,
        "disconnects": disconnects,
        "latency_hist": _histogram(book.delivery_latencies_ns()),
        "send_lag_hist": hist.encode(tally.send_lag.histogram),
        "connect_hist": hist.encode(connect_times.histogram),
        "connect_s": connect_s,
        "error_samples": tally.error_samples,
        "recipients": counts.recipients,
        "duplicated": counts.duplicated,
        "out_of_order": counts.out_of_order,
        "fanout_first_hist": _histogram(first),
        "fanout_median_hist": _histogram(median),
        "fanout_last_hist": _histogram(last),
    }
    if book.publisher_worker >= 0:
        local, remote = book.split_latencies_ns()
        by_worker = book.counts_by_worker()
        fields.update(
            publisher_worker=book.publisher_worker,
            worker_receivers={str(w): c.receivers for w, c in by_worker.items()},
            worker_delivered={str(w): c.delivered for w, c in by_worker.items()},
            worker_missing={str(w): c.missing for w, c in by_worker.items()},
            worker_duplicated={str(w): c.duplicated for w, c in by_worker.items()},
            fanout_local_hist=_histogram(local),
            fanout_remote_hist=_histogram(remote),
            message_intended_ns=book.measured_intended_ns(),
            worker_message_delivered={
                str(w): row for w, row in book.deliveries_by_worker().items()
            },
        )
    return WorkerReport(**fields)


def main() -> int:
    return worker_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
