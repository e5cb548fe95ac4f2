"""A run's specification: one cell of a matrix, fully resolved before anything starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bench import modes
from bench.load.stacks import client_stack
from bench.protocol.exchange import PayloadKind

# Socket.IO's default path, measured by connect cells: Engine.IO opens over HTTP long-polling,
# then upgrades to WebSocket (what python-socketio's and the JavaScript clients do by default).
POLLING_UPGRADE = "polling-upgrade"
# The tiers (RunSpec.tier): the fairness contract, or each library as it ships.
EQUALISED = "equalised"
SHIPPED = "shipped"
TIERS = (EQUALISED, SHIPPED)
# The modes the shipped tier and TLS measure so far (others are refused in one line). TLS runs
# over WebSocket only: the generator's HTTP/1.1 long-polling client has no TLS, so neither
# polling cells nor the shipped tier's Socket.IO (polling first) run over it.
SHIPPED_MODES = ("closed", "open", "memory")
TLS_MODES = ("closed", "open", "connect")


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    server: str  # a name from bench.catalog.SERVERS, or the label of a --target/--server-cmd
    protocol: Literal["raw", "socketio"]
    loop: str  # the server's event loop ("external" for a --target or --server-cmd server)
    mode: str  # a name of the mode registry (bench.modes)
    connections: int
    payload_bytes: int
    payload_kind: PayloadKind
    warmup_s: float
    duration_s: float
    rate_msgs_s: float = 0.0  # open loop: offered rate of all connections together
    inflight: int = 1  # closed loop: messages in flight per connection
    ack: bool = False
    repeat: int = 1
    workers: int = 1
    # --cluster local:N: the generator's shards run as Dask tasks (bench.load.cluster).
    cluster: str = ""
    # Socket.IO servers: or "polling" (HTTP long-polling only); connect cells also measure
    # POLLING_UPGRADE, the default path.
    transport: str = "websocket"
    # Connect cells: connections opened per second (0: as fast as the server accepts them,
    # with at most WorkerPlan.connect_concurrency, 64, set-ups under way).
    rate_conns_s: float = 0.0
    # Memory cells: idle connections held at each count in turn (warmup_s to settle, then
    # duration_s of sampling the server's memory); ``connections`` is the largest.
    memory_steps: tuple[int, ...] = ()
    # Fan-out cells: the share of receivers that read slowly (slow consumers).
    slow_share: float = 0.0
    client: str = "fast"
    # Servers burn this much CPU per echoed message (--handicap-us; 0: off). Not part of the
    # cell: a handicapped run is compared with the same cells of an unhandicapped baseline.
    handicap_us: float = 0.0
    # Python servers run this many empty loop iterations per echoed message (--handicap-loops):
    # the same work in every run, for gates on instruction counts.
    handicap_loops: int = 0
    slo_p99_ms: float | None = None  # capacity mode: the latency objective
    capacity_steps: int = 7  # capacity mode: bisection probes after the closed-loop bound
    # Closed loop: servers of one pass run together, loaded in turn for slices of about this
    # many seconds (bench.load.slices); 0 runs each server on its own.
    slice_s: float = 0.0
    target_url: str | None = None  # set for a server someone else started
    # --allow-network: networks besides loopback this run may load (bench.target), as CIDRs.
    allow_network: tuple[str, ...] = ()
    server_pid: int | None = None
    # --server-cmd: the user's server, started and stopped by the harness; its argument list
    # with "{port}" where the harness's pick of a free port goes (bench.server_cmd).
    server_cmd: tuple[str, ...] = ()
    # --server-cmd: how long its port may take to accept connections after each start.
    ready_timeout_s: float = 30.0
    # Scale-out: processes of the server on one port (SO_REUSEPORT); with more than one, a
    # Redis broker relays broadcasts between them (bench.redis_broker): the harness's own
    # redis-server, or ``redis_url`` (--redis-url) when the user names one.
    server_workers: int = 1
    redis_url: str = ""
    # Scale-out fan-out: the harness kills its broker (SIGKILL) a quarter into the window and
    # restarts it on the same port (bench.runner.BROKER_DOWN_S later): scenario broker-fault.
    broker_fault: bool = False
    # "equalised" (the fairness contract, servers.common.FAIRNESS) or "shipped": every server
    # with its library's defaults (servers.shipped) and a browser-like client: it offers
    # permessage-deflate, and Socket.IO connections open over long-polling, then upgrade.
    tier: str = EQUALISED
    # Every server over TLS (wss://, https:// for Engine.IO), with a certificate the harness
    # makes for the run (bench.tls) and the generator verifies.
    tls: bool = False
    # Verifying a wss:// server: the CA file (the harness's own for its servers; --ca for a
    # --target), else the system's CAs; or no verification at all (--insecure, targets only).
    tls_ca: str = ""
    tls_insecure: bool = False
    # Options of a mode that have no field of their own here, as (key, value) pairs (a mode
    # defined beside the registry's; bench.modes.Option), passed on in the workers' plans.
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # The label is the stack that runs the cell (bench.load.stacks), whatever was asked:
        # a suite run with --client library still measures its connect storms on the fast one.
        stack = client_stack(self.mode, self.transport, self.client)
        object.__setattr__(self, "client", stack.client)

    @property
    def worker_module(self) -> str:
        """The generator's worker entry for this cell."""
        return client_stack(self.mode, self.transport, self.client).module

    @property
    def managed(self) -> bool:
        """A server of the registry (bench.catalog), started by the harness."""
        return self.target_url is None and not self.server_cmd

    @property
    def started_here(self) -> bool:
        """The harness starts and stops the server: the registry's, or a --server-cmd."""
        return self.target_url is None

    @property
    def broker(self) -> str:
        """What relays broadcasts between the server's processes ("" for one process)."""
        return "redis" if self.server_workers > 1 else ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def uses_fast_client(cell: RunSpec) -> bool:
    """The generator's own picows client (calibrated, time-sliceable): WebSocket, not the
    library clients, not long-polling."""
    return cell.client == "fast" and cell.transport == "websocket"


def uses_calibration(cell: RunSpec) -> bool:
    """The cell's rows compare its rate with the generator's calibrated ceiling (echo on the
    fast client); a suite without such cells needs no calibration."""
    return uses_fast_client(cell) and modes.get(cell.mode).calibrated


def sliceable(cell: RunSpec) -> bool:
    # Several server processes are never sliced: a slice loads one server process.
    return (
        cell.slice_s > 0 and modes.get(cell.mode).sliceable and cell.managed
        and uses_fast_client(cell)
        and cell.server_workers == 1
    )  # fmt: skip


def run_groups(cells: list[RunSpec]) -> list[list[RunSpec]]:
    """Consecutive cells that differ only in their server (and its event loop) and share one
    time-sliced run (``bench.load.slices``); every other cell runs alone. Order is kept. A
    server appears once per run, so a suite's asyncio and uvloop passes stay apart, and Node's
    servers (their own loop) join the run of the first loop's Python servers."""

    def key(cell: RunSpec) -> dict[str, Any]:
        return {k: v for k, v in cell.as_dict().items() if k not in ("server", "protocol", "loop")}

    groups: list[list[RunSpec]] = []
    for cell in cells:
        last = groups[-1] if groups else None
        if (
            last is not None
            and sliceable(cell)
            and sliceable(last[0])
            and key(last[0]) == key(cell)
            and cell.server not in {c.server for c in last}
        ):
            last.append(cell)
        else:
            groups.append([cell])
    return groups
