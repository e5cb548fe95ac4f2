"""What the coordinator tells a worker process to do, and what the worker reports back.

Both travel as one JSON line each over the worker's stdin/stdout (pyperf's manager/worker
pattern), so they are plain frozen dataclasses of JSON-friendly fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.load.slices import SliceSchedule
from bench.protocol.exchange import PayloadKind

# A connection's set-up limit per protocol, as its reference client waits: websockets'
# ``open_timeout`` (10 s) for raw WebSocket, socket.io-client's Manager ``timeout`` (20 s) for
# Socket.IO. python-socketio's full collections took 2.5 s at 15,000 connections in one process
# (gc.callbacks, 2026-12-02), and three such processes share one core at 50,000 connections.
CONNECT_TIMEOUT_S = {"raw": 10.0, "socketio": 20.0}


@dataclass(frozen=True)
class WorkerPlan:
    url: str
    protocol: Literal["raw", "socketio"]
    mode: str  # a name of the mode registry (bench.modes)
    connections: int
    payload_bytes: int
    payload_kind: PayloadKind
    warmup_s: float
    duration_s: float
    inflight: int = 1
    # Open loop: the *total* rate of all workers; the worker sends its interleaved share.
    rate_msgs_s: float = 0.0
    ack: bool = False
    worker_index: int = 0
    worker_count: int = 1
    # How long one connection's set-up may take: the protocol's reference client's own limit
    # (CONNECT_TIMEOUT_S), unless a plan says otherwise.
    connect_timeout_s: float = 10.0
    connect_concurrency: int = 64
    # After the window closes, how long to wait for echoes still in flight.
    drain_timeout_s: float = 5.0
    # Loopback source addresses to spread client sockets over (empty: let the kernel pick).
    source_addresses: tuple[str, ...] = ()
    # Closed loop, several servers in one run (bench.load.slices): this worker's slot among
    # ``slots``, each loaded in turn for slices of about ``slice_s``.
    slot: int = 0
    slots: int = 1
    slice_s: float = 0.0
    slice_seed: int = 0
    # Connect storms (bench.load.connect_worker): connections opened per second by all
    # workers together (0: full speed), and the path (websocket, or Socket.IO's
    # polling-upgrade). ``duration_s`` bounds the storm.
    rate_conns_s: float = 0.0
    transport: str = "websocket"
    # Memory (bench.load.memory_worker): idle connections held at each of these counts in
    # turn, for ``warmup_s`` to settle and then ``duration_s`` to be sampled.
    memory_steps: tuple[int, ...] = ()
    # Fan-out: the share of receivers that read slowly (bench.load.fanout_worker).
    slow_share: float = 0.0
    # Scale-out: the server's processes; with more than one, fan-out connections learn which
    # process they are on from its announcement (servers.common).
    server_workers: int = 1
    # A mode's own options that have no field here (RunSpec.params).
    params: dict[str, Any] = field(default_factory=dict)
    # Shipped tier: connections offer permessage-deflate (bench.protocol.deflate.OFFER), as
    # browsers do, and speak it where the server accepts.
    deflate: bool = False
    # wss:// URLs: the CA file to verify the server against (empty: the system's), or none
    # of that with ``tls_insecure``.
    tls_ca: str = ""
    tls_insecure: bool = False

    def slices(self) -> SliceSchedule | None:
        if self.slots <= 1:
            return None
        return SliceSchedule.plan(
            self.slot, self.slots, self.slice_s, self.warmup_s, self.duration_s, self.slice_seed
        )

    @property
    def span_s(self) -> float:
        """Wall time from the start signal to the end of the last measured send."""
        schedule = self.slices()
        if schedule is not None:
            return schedule.span_s
        if self.memory_steps:
            # Each step's wait, and opening the connections (allowing 100 a second).
            held_s = len(self.memory_steps) * (self.warmup_s + self.duration_s)
            return held_s + max(self.memory_steps) / 100 + self.connect_timeout_s
        return self.warmup_s + self.duration_s

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerPlan:
        fields = json.loads(text)
        fields["source_addresses"] = tuple(fields.get("source_addresses", ()))
        fields["memory_steps"] = tuple(fields.get("memory_steps", ()))
        return cls(**fields)


@dataclass(frozen=True)
class WorkerReport:
    """Counters and encoded histograms of one worker, for exact merging."""

    worker_index: int
    connections: int
    sent: int
    received: int
    missing: int
    unexpected: int
    disconnects: int
    latency_hist: str
    send_lag_hist: str
    connect_hist: str
    connect_s: float
    clamped: int = 0
    error_samples: list[str] = field(default_factory=list)
    # What the connections negotiated: each distinct Sec-WebSocket-Extensions agreement
    # ("" for none), and over TLS the protocol version and cipher (one connection's).
    negotiated_extensions: list[str] = field(default_factory=list)
    tls_version: str = ""
    tls_cipher: str = ""
    # Time-sliced closed loop: echoes counted in each measured round (bench.load.slices), so
    # that servers loaded in the same rounds pair round by round; empty otherwise.
    round_received: list[int] = field(default_factory=list)
    # Bytes on the wire (bench.metrics.wire) and WebSocket frames, from the start signal to
    # the end of the drain, over ``wire_messages`` messages (warm-up included); None when the
    # client stack cannot count them.
    wire_messages: int = 0
    wire_bytes_up: int | None = None
    wire_bytes_down: int | None = None
    wire_frames_up: int | None = None
    wire_frames_down: int | None = None
    # Long-polling: HTTP requests over the same span (None for WebSocket stacks).
    http_requests: int | None = None
    # Connect storms: attempts that failed or did not finish within the storm's time limit.
    connect_failures: int = 0
    # Fan-out (bench.load.fanout): receivers, deliveries made twice or after a later message,
    # and per published message the latency of its first, median and last receiver.
    recipients: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    fanout_first_hist: str = ""
    fanout_median_hist: str = ""
    fanout_last_hist: str = ""
    # Fan-out with slow consumers: how many, what reached them, and how many the server dropped.
    slow_receivers: int = 0
    slow_delivered: int = 0
    slow_missing: int = 0
    # Scale-out fan-out: the publisher's server process, per process (keys: its worker id as
    # text, JSON's) the fast receivers on it and their counts, and the latency of deliveries
    # on the publisher's process (local) and across the broker (remote).
    publisher_worker: int = -1
    worker_receivers: dict[str, int] = field(default_factory=dict)
    worker_delivered: dict[str, int] = field(default_factory=dict)
    worker_missing: dict[str, int] = field(default_factory=dict)
    worker_duplicated: dict[str, int] = field(default_factory=dict)
    fanout_local_hist: str = ""
    fanout_remote_hist: str = ""
    # ... and per measured message: its intended publish time (CLOCK_MONOTONIC ns) and, per
    # process, how many of its fast receivers got it (what a broker fault did).
    message_intended_ns: list[int] = field(default_factory=list)
    worker_message_delivered: dict[str, list[int]] = field(default_factory=dict)
    slow_dropped: int = 0
    # Memory: [connections, CLOCK_MONOTONIC ns when they were all open] per step.
    memory_steps_ns: list[list[int]] = field(default_factory=list)
    # Reconnect storms: messages whose reply never came (sent while the server was down or
    # the client reconnecting), and per client when it exchanged messages again (-1: never).
    lost: int = 0
    recovered_ns: list[int] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.missing + self.unexpected + self.connect_failures + self.duplicated

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> WorkerReport:
        return cls(**fields)
