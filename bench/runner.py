"""Runs one cell: start the server, probe its fairness, run the workers, sample, merge.

This is the I/O edge that ties the pieces together; the figures it reports are computed by the
pure modules it calls (histogram merging, window usage) and shaped into a row by
``bench.results``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
import signal
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic_ns
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench import modes
from bench.catalog import SERVERS
from bench.errors import RunFailed, UsageError
from bench.limits import (
    ConnectionBudget,
    hard_open_files_limit,
    plan_connections,
    port_range,
    raise_open_files_limit,
)
from bench.load.cluster import DaskPool
from bench.load.cluster import active as active_cluster
from bench.load.coordinator import START_DELAY_S, WorkerPool
from bench.load.plan import CONNECT_TIMEOUT_S, WorkerPlan, WorkerReport
from bench.metrics import fairness, looplag
from bench.metrics import histogram as hist
from bench.metrics.sampling import ProcessSampler, WindowUsage, summed_usage
from bench.modes import ServerWrap
from bench.processes import STOP_GRACE_S, python_argv, start_process, stop_process
from bench.redis_broker import BrokerFailed, RedisServer, ping
from bench.server_cmd import (
    fill_in,
    free_port,
    listening_pid,
    pin_family,
    signal_group,
    wait_until_listening,
)
from bench.spec import POLLING_UPGRADE, SHIPPED, RunSpec
from bench.target import is_loopback, websocket_url
from bench.tls import CA_FILE, Certificates, client_context, make_certificates
from servers.common import LOOP_LAG_FILE_ENV, listening_socket

SERVER_READY_TIMEOUT_S = 30.0
# A server under valgrind starts several times slower (websockets: 2 s uninstrumented).
WRAPPED_START_FACTOR = 4
LOOPBACK = "127.0.0.1"
# A generator process at or above this share of its core may be what limits the run.
CLIENT_BOUND_CPU_PCT = 90.0
# Open loop: a generator sending this late (p99 of actual minus intended send time) is behind
# its own schedule; asyncio timers alone account for about 1 ms.
CLIENT_BOUND_SEND_LAG_US = 5000.0
# Closed loop: when the hypervisor held the generator's CPUs for this share of the window (%),
# the loop stalled with them and the server waited. Measured here (10 connections, 0.1-s
# slices, asyncio servers): raw servers' CPU fell from 91-94% of their core at 0-8% generator
# steal to 48-70% at 20-35%, their throughput with it, while the Socket.IO servers, with more
# work queued per message, lost far less; so the Socket.IO/raw ratio moves with the steal.
CLIENT_BOUND_GENERATOR_STEAL_PCT = 10.0
# A server that died or failed to start: this many of its log's last lines go into the row.
LOG_TAIL_LINES = 3
LOG_TAIL_CHARS = 400


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_chars: int = LOG_TAIL_CHARS) -> str:
    """The last non-empty lines of a log as one line for a CSV cell ("" when there are none).
    Brackets become parentheses: the progress line that shows a failure is rich markup, where
    a log's "[/...]" would be a closing tag."""
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, path.stat().st_size - 64 * 1024))
            text = stream.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept).replace("[", "(").replace("]", ")")
    return joined if len(joined) <= max_chars else "..." + joined[-max_chars:]


def setup_path(spec: RunSpec) -> str:
    """How the workers open a connection: the cell's transport, except that in the shipped
    tier Socket.IO echo connections take the libraries' default path, long-polling first,
    then the upgrade to WebSocket."""
    shipped_echo = (
        spec.tier == SHIPPED and spec.protocol == "socketio" and spec.mode in ("closed", "open")
    )
    return POLLING_UPGRADE if shipped_echo and spec.transport == "websocket" else spec.transport


def with_run_certificates(spec: RunSpec, log_dir: Path) -> RunSpec:
    """A TLS cell of a server started here trusts the CA that ``prepare_target`` makes for it
    in its log folder (bench.tls), and nothing else."""
    if spec.tls and spec.started_here:
        return replace(spec, tls_ca=str(log_dir / "tls" / CA_FILE))
    return spec


def tier_arguments(spec: RunSpec, certificates: Certificates | None) -> list[str]:
    """The server's tier and TLS flags (servers.common)."""
    args = ["--tier", SHIPPED] if spec.tier == SHIPPED else []
    if certificates is not None:
        args += ["--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key)]
    return args


def server_transports(spec: RunSpec) -> tuple[str, ...]:
    """The Engine.IO transports a managed Socket.IO server allows for the cell (none given:
    the contract's WebSocket only; in the shipped tier, the library's default)."""
    if spec.transport == POLLING_UPGRADE:
        return ("polling", "websocket")
    return (spec.transport,) if spec.transport != "websocket" else ()


@dataclass(frozen=True)
class Pinning:
    server_cpus: tuple[int, ...]
    generator_cpus: tuple[int, ...]


@dataclass
class RunResult:
    spec: RunSpec
    run_id: str
    started_utc: str
    status: str = "ok"  # "ok" or "failed"
    failure: str = ""
    reports: list[WorkerReport] = field(default_factory=list)
    window_s: tuple[int, int] = (0, 0)
    server_usage: WindowUsage | None = None
    client_usage: list[WindowUsage] = field(default_factory=list)
    probe: fairness.ProbeResult | None = None
    connect_s: float = math.nan
    server_exit_status: int | None = None
    # From the suite's calibration (NaN when none): see bench.calibration.
    generator_ceiling_msgs_s: float = math.nan
    generator_processes: int = 1
    # Instructions mode (bench.modes.instructions): messages N, and the instructions counted
    # for the set-ups, the first N echoes and the next N; the valgrind that counted them.
    instructions: tuple[int, int, int, int] | None = None
    valgrind_version: str = ""
    # Capacity mode: the rate found, and every probe of the search.
    capacity_msgs_s: float = math.nan
    server_loop_lag_p99_ms: float = math.nan
    server_loop_lag_max_ms: float = math.nan
    # Hypervisor steal on the server's and the generator's CPUs during the window (%).
    server_cpus_steal_pct: float = math.nan
    generator_cpus_steal_pct: float = math.nan
    # Connect storms: the server's CPU seconds from the start signal until every connection
    # was set up, echoed and closed (bursts are shorter than the sampling interval, so a CPU
    # share would mostly measure idle time around them).
    server_storm_cpu_s: float = math.nan
    # Fan-out: how far the server's RSS rose during the run (bytes).
    server_rss_growth_bytes: float = math.nan
    # Reconnect storms: when the server was killed (CLOCK_MONOTONIC ns).
    killed_ns: int = 0
    # Memory cells: per step, (connections, the server's median RSS, median USS) in bytes.
    memory_points: list[tuple[int, float, float]] = field(default_factory=list)
    capacity_probes: list[dict[str, Any]] = field(default_factory=list)
    # Scale-out: each server process's own figures (server_usage is their sum).
    server_worker_usage: list[WindowUsage] = field(default_factory=list)
    broker_version: str = ""
    # Broker faults: when the broker was killed and when it answered again (monotonic ns).
    broker_killed_ns: int = 0
    broker_restarted_ns: int = 0
    # Broker faults: server processes that exited during the run, by worker id (their exit
    # status and the end of their log): the scenario's finding, not a harness failure.
    exited_workers: dict[int, str] = field(default_factory=dict)

    def merged(self, attribute: str) -> Any:
        return hist.merge(getattr(r, attribute) for r in self.reports)


class ManagedServer:
    """A server under test started by the harness: READY line, then SIGTERM at the end."""

    def __init__(
        self,
        name: str,
        loop: str,
        cpus: frozenset[int],
        log_path: Path,
        module: str = "",
        transports: tuple[str, ...] = (),
        handicap_us: float = 0.0,
        command: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        listen_fd: bool = False,
    ) -> None:
        """``name`` from ``SERVERS``; or any name with the ``module`` to run (the calibration
        echo server, which shares the servers' command line), or with the whole ``command``
        (UserServer). ``transports``: Socket.IO servers' Engine.IO transports, when not the
        contract's WebSocket only. ``handicap_us``: CPU the server burns per echoed message
        (testing gates only). ``extra_args``: appended to the common ones (a ServerGroup's
        member: port sharing, its worker id, the broker). ``listen_fd``: the harness binds the
        listening socket, with SO_REUSEPORT, and hands it over (``--listen-fd N``): how a
        ServerGroup's member shares the port when it cannot bind with --reuse-port itself."""
        self.transports = transports
        self.handicap_us = handicap_us
        self.handicap_loops = 0  # Python servers: loop iterations per message (--handicap-loops)
        # The tier and TLS (servers.common: --tier, --tls-cert and --tls-key), for every process.
        self.tier_args: list[str] = []
        self.extra_args = list(extra_args)
        self.listen_fd = listen_fd
        self.name = name
        # The command before the common arguments: the record's, or the module's.
        if command:
            self.command = list(command)
        else:
            self.command = python_argv(module) if module else SERVERS[name].argv()
        self.loop = loop
        self.cpus = cpus
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.loop_lag_path = log_path.with_name("loop-lag.txt")
        # A program the server runs under (callgrind: bench.modes.instructions), and its
        # environment; with one, the server samples no loop lag (its timer would be work that
        # grows with time, not with messages).
        self.wrap: ServerWrap | None = None

    @property
    def wrapper(self) -> list[str]:
        return self.wrap.argv if self.wrap is not None else []

    def _env(self) -> dict[str, str]:
        if self.wrap is not None:
            return dict(self.wrap.env)
        return {LOOP_LAG_FILE_ENV: str(self.loop_lag_path)}

    def _command(self) -> list[str]:
        if self.wrap is not None and self.wrap.python and self.command[:1] == [sys.executable]:
            return [self.wrap.python, *self.command[1:]]
        return list(self.command)

    def _clean_up(self) -> None:
        if self.wrap is not None and self.wrap.cleanup is not None:
            self.wrap.cleanup()

    async def start(self, port: int = 0) -> None:
        """Start the server on ``port`` (0: a free one, learned from its READY line)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        listener = self._listening_socket(port) if self.listen_fd else None
        try:
            where = ["--port", str(port)]
            if listener is not None:
                where = ["--port", str(listener.getsockname()[1]),
                         "--listen-fd", str(listener.fileno())]  # fmt: skip
            if self.wrap is not None and self.wrap.prepare is not None:
                await self.wrap.prepare(self._command())
            argv = [*self.wrapper, *self._command(), "--host", LOOPBACK, *where,
                    "--loop", self.loop]  # fmt: skip
            if self.transports:
                argv += ["--transports", ",".join(self.transports)]
            if self.handicap_us:
                argv += ["--handicap-us", f"{self.handicap_us:g}"]
            if self.handicap_loops:
                argv += ["--handicap-loops", str(self.handicap_loops)]
            argv += self.tier_args + self.extra_args
            self.process = await start_process(
                argv,
                cpus=self.cpus,
                stderr=self.log_path,
                env=self._env(),
                inherit_env=self.wrap is None or not self.wrap.whole_env,
                pass_fds=() if listener is None else (listener.fileno(),),
            )
        finally:
            # The child has its copy. Ours must go: a listening socket in the SO_REUSEPORT
            # group that nobody accepts on would still be dealt its share of the connections.
            if listener is not None:
                listener.close()
        assert self.process.stdout is not None
        try:
            ready_s = SERVER_READY_TIMEOUT_S * (WRAPPED_START_FACTOR if self.wrapper else 1)
            line = await asyncio.wait_for(self.process.stdout.readline(), ready_s)
        except TimeoutError as exc:
            raise RunFailed(
                f"server {self.name} did not print READY within "
                f"{ready_s:.0f} s (log: {self.log_path})"
            ) from exc
        word, _, ready_port = line.decode(errors="replace").strip().partition(" ")
        if word != "READY" or not ready_port.isdigit():
            with contextlib.suppress(TimeoutError):  # its status, when it is exiting
                await asyncio.wait_for(self.process.wait(), 1.0)
            raise RunFailed(f"server {self.name} failed to start ({self.exit_description()})")
        self.port = int(ready_port)

    def _listening_socket(self, port: int) -> socket.socket:
        """The socket a ``listen_fd`` server is handed: what Node's ``reusePort: true`` (22.12
        and 23.1 on; Node 20 has none) would bind, SO_REUSEADDR and SO_REUSEPORT on
        127.0.0.1:port with the contract's backlog, one a process; the kernel spreads
        connections over a group's sockets as over ones the processes bound themselves. Port 0
        (the first member) picks a free one."""
        try:
            return listening_socket(LOOPBACK, port, reuse_port=True)
        except OSError as exc:
            raise RunFailed(
                f"server {self.name}: cannot listen on {LOOPBACK}:{port}: {exc.strerror}"
            ) from exc

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def exit_description(self) -> str:
        """The server's exit status and the end of its log, for a failed row."""
        status = self.process.returncode if self.process is not None else None
        tail = log_tail(self.log_path)
        ending = f"its log ends: {tail}" if tail else "its log is empty"
        return f"status {status}; {ending}; log: {self.log_path}"

    async def kill_and_restart(self) -> int:
        """SIGKILL the server (no goodbye to its clients), then start it again on the same
        port; returns the CLOCK_MONOTONIC time of the kill."""
        assert self.process is not None
        killed_ns = monotonic_ns()
        self.process.kill()
        await stop_process(self.process)
        await self.start(self.port)
        return killed_ns

    async def stop(self) -> int | None:
        try:
            if self.process is None:
                return None
            return await stop_process(self.process)
        finally:
            self._clean_up()

    @property
    def sampled_pid(self) -> int | None:
        """The process whose CPU and memory are the server's."""
        return self.process.pid if self.process is not None else None

    @property
    def more_sampled_pids(self) -> list[int]:
        """The server's other processes, sampled and summed with ``sampled_pid`` (scale-out)."""
        return []

    def loop_lag_samples(self) -> list[tuple[int, int]]:
        return looplag.read_samples(self.loop_lag_path)


class ServerGroup(ManagedServer):
    """``workers`` processes of one registry server sharing one port (SO_REUSEPORT: the kernel
    spreads connections over them), all pinned to the server CPUs, with a Redis broker relaying
    broadcasts between them: a redis-server the group starts first and stops last, or the
    user's ``redis_url``. Each process is told its worker id, which it announces to fan-out
    connections (servers.common). Alive while every process is; stopped together."""

    def __init__(
        self, name: str, loop: str, cpus: frozenset[int], log_path: Path, workers: int,
        redis_url: str = "", transports: tuple[str, ...] = (), handicap_us: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(name, loop, cpus, log_path, transports=transports,
                         handicap_us=handicap_us)  # fmt: skip
        self.workers = workers
        self.redis_url = redis_url
        self.redis: RedisServer | None = (
            None if redis_url else RedisServer(log_path.with_name("redis.log"), cpus)
        )
        self.broker_version = ""
        self.members: list[ManagedServer] = []

    @property
    def broker_url(self) -> str:
        return self.redis_url or (self.redis.url if self.redis else "")

    async def start(self, port: int = 0) -> None:
        try:
            if self.redis is not None:
                await self.redis.start()
                self.broker_version = self.redis.version
            else:
                self.broker_version = await ping(self.redis_url)
        except BrokerFailed as exc:
            raise RunFailed(str(exc)) from exc
        self.members = [self._member(k) for k in range(self.workers)]
        # The first picks the port; the others then share it.
        await self.members[0].start(port)
        self.port = self.members[0].port
        await asyncio.gather(*(m.start(self.port) for m in self.members[1:]))
        self.process = self.members[0].process

    def _member(self, k: int) -> ManagedServer:
        # Port sharing: the server's own --reuse-port, or a socket the member is handed.
        listen_fd = SERVERS[self.name].listen_fd
        args = [*([] if listen_fd else ["--reuse-port"]), "--worker-id", str(k),
                "--broker-url", self.broker_url]  # fmt: skip
        member = ManagedServer(
            self.name, self.loop, self.cpus, self.log_path.with_name(f"server-{k}.log"),
            transports=self.transports, handicap_us=self.handicap_us, extra_args=args,
            listen_fd=listen_fd,
        )  # fmt: skip
        member.loop_lag_path = self.log_path.with_name(f"loop-lag-{k}.txt")
        member.handicap_loops = self.handicap_loops
        member.tier_args = self.tier_args
        return member

    def alive(self) -> bool:
        return bool(self.members) and all(m.alive() for m in self.members)

    def exit_description(self) -> str:
        for k, member in enumerate(self.members):
            if not member.alive():
                return f"worker {k}: {member.exit_description()}"
        return self.members[0].exit_description() if self.members else "never started"

    def exited_members(self) -> dict[int, str]:
        """The processes that are no longer running, by worker id, with how they ended."""
        return {k: m.exit_description() for k, m in enumerate(self.members) if not m.alive()}

    async def kill_and_restart(self) -> int:
        raise RunFailed("a reconnect storm restarts one server process: not with --server-workers")

    async def stop(self) -> int | None:
        """Every process (the first's exit status, or the first bad one), then the broker."""
        try:
            statuses = await asyncio.gather(*(m.stop() for m in self.members))
        finally:
            if self.redis is not None:
                await self.redis.stop()
        bad = [s for s in statuses if s not in (0, None)]
        return bad[0] if bad else (statuses[0] if statuses else None)

    @property
    def sampled_pid(self) -> int | None:
        return self.members[0].sampled_pid if self.members else None

    @property
    def more_sampled_pids(self) -> list[int]:
        return [pid for m in self.members[1:] if (pid := m.sampled_pid) is not None]

    def loop_lag_samples(self) -> list[tuple[int, int]]:
        """Every process's samples together: the lag any of them showed."""
        return sorted(sample for m in self.members for sample in m.loop_lag_samples())


class UserServer(ManagedServer):
    """A server started from the user's command (``--server-cmd``), which the harness did not
    write: ready once its port accepts connections (no READY line), stopped with its process
    group. It is pinned to the server CPUs and sampled like the registry's servers."""

    def __init__(
        self, name: str, command: Sequence[str], cpus: frozenset[int], log_path: Path,
        ready_timeout_s: float,
    ) -> None:  # fmt: skip
        """``command``: the argument list with ``{port}`` to fill in (bench.server_cmd)."""
        super().__init__(name, "external", cpus, log_path, command=command)
        self.ready_timeout_s = ready_timeout_s
        self._sampled_pid: int | None = None

    async def start(self, port: int = 0) -> None:
        """Start the command on ``port`` (0: a free one the harness picks) and wait until the
        port accepts connections; RunFailed, in one line, when it exits or times out first
        (the process may still be running then: the caller stops it)."""
        self.port = port or free_port(LOOPBACK)
        argv = [*self.wrapper, *fill_in(self.command, LOOPBACK, self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The registry's servers raise their open-file limit to the hard one; this one inherits
        # the harness's, raised, so that both hold as many connections.
        raise_open_files_limit()
        # stdout and stderr both into the log: nobody reads a pipe, and a full one would stall.
        with self.log_path.open("ab") as log:
            try:
                self.process = await start_process(
                    argv, cpus=self.cpus, stdout=log.fileno(), stderr=asyncio.subprocess.STDOUT,
                    cwd=Path.cwd(), env=self._env() if self.wrap is not None else None,
                )  # fmt: skip
            except OSError as exc:
                raise RunFailed(
                    f"server {self.name}: cannot run {shlex.join(argv)}: {exc.strerror or exc}"
                ) from exc
        where = f"{LOOPBACK}:{self.port}"
        ready_s = self.ready_timeout_s * (WRAPPED_START_FACTOR if self.wrapper else 1)
        if not await wait_until_listening(self.process, LOOPBACK, self.port, ready_s):
            if self.process.returncode is not None:
                raise RunFailed(
                    f"server {self.name} exited before listening on {where} "
                    f"({self.exit_description()}; command: {shlex.join(argv)})"
                )
            tail = log_tail(self.log_path)
            raise RunFailed(
                f"server {self.name} did not accept connections on {where} within "
                f"{ready_s:g} s (command: {shlex.join(argv)}; "
                f"{f'its log ends: {tail}' if tail else 'its log is empty'}; "
                f"log: {self.log_path})"
            )
        pin_family(self.process.pid, self.cpus)
        self._sampled_pid = listening_pid(self.process.pid, self.port)

    @property
    def sampled_pid(self) -> int | None:
        return self._sampled_pid

    async def kill_and_restart(self) -> int:
        """SIGKILL the server's process group, then start the command again on the same port;
        returns the CLOCK_MONOTONIC time of the kill."""
        assert self.process is not None
        killed_ns = monotonic_ns()
        signal_group(self.process.pid, signal.SIGKILL)
        await stop_process(self.process)
        await self.start(self.port)
        return killed_ns

    async def stop(self) -> int | None:
        """SIGTERM to its process group, up to ``STOP_GRACE_S`` for the command to exit, then
        SIGKILL to whatever of the group is left; returns the command's exit status."""
        if self.process is None:
            return None
        process = self.process
        signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        signal_group(process.pid, signal.SIGKILL)
        return await stop_process(process)


def server_files_limit(spec: RunSpec) -> int | None:
    """The server's open-file limit: ours for managed servers (they raise soft to hard, as
    the workers do), the target process's current one with --server-pid, else unknown."""
    if spec.started_here:
        return hard_open_files_limit()
    if spec.server_pid is None:
        return None
    try:
        soft, _ = psutil.Process(spec.server_pid).rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.Error, OSError):
        return None
    return int(soft)


def connection_budget(spec: RunSpec) -> ConnectionBudget:
    """How connections split over workers and source addresses; UsageError when they can't."""
    return plan_connections(
        spec.connections, spec.workers, hard_open_files_limit(), server_files_limit(spec),
        port_range(), spec.server_workers,
    )  # fmt: skip


def worker_plans(spec: RunSpec, url: str) -> list[WorkerPlan]:
    mode = spec.mode
    budget = connection_budget(spec)
    if not is_loopback(urlsplit(url).hostname or ""):
        # A target beyond loopback (--allow-network): the kernel picks the source address; the
        # loopback ones would not route there.
        budget = replace(budget, source_addresses=())
    connections = budget.per_worker
    return [
        WorkerPlan(
            url=url,
            protocol=spec.protocol,
            mode=mode,
            connections=connections[index],
            connect_timeout_s=CONNECT_TIMEOUT_S[spec.protocol],
            payload_bytes=spec.payload_bytes,
            payload_kind=spec.payload_kind,
            warmup_s=spec.warmup_s,
            duration_s=spec.duration_s,
            inflight=spec.inflight,
            rate_msgs_s=spec.rate_msgs_s,
            ack=spec.ack,
            rate_conns_s=spec.rate_conns_s,
            transport=setup_path(spec),
            memory_steps=spec.memory_steps,
            slow_share=spec.slow_share,
            server_workers=spec.server_workers,
            params=dict(spec.params),
            deflate=spec.tier == SHIPPED,
            tls_ca=spec.tls_ca,
            tls_insecure=spec.tls_insecure,
            worker_index=index,
            worker_count=spec.workers,
            source_addresses=budget.source_addresses,
        )
        for index in range(spec.workers)
    ]


def spawned_pool(spec: RunSpec, pinning: Pinning, log_dir: Path) -> WorkerPool:
    """The cell's generator workers, to be started (``WorkerPool.spawn``) while its server
    starts; their plans need the server's port, so they come later."""
    if spec.cluster:
        cluster = active_cluster()
        if cluster is None:
            raise RunFailed(f"--cluster {spec.cluster}: no Dask cluster is running")
        return DaskPool(
            [], frozenset(pinning.generator_cpus), log_dir, cluster,
            module=spec.worker_module, count=spec.workers,
        )  # fmt: skip
    return WorkerPool(
        [], frozenset(pinning.generator_cpus), log_dir, module=spec.worker_module,
        count=spec.workers,
    )  # fmt: skip


async def measure(
    spec: RunSpec,
    url: str,
    server_pid: int | None,
    pinning: Pinning,
    log_dir: Path,
    result: RunResult,
    more_server_pids: Sequence[int] = (),
    during: Callable[[int], Awaitable[None]] | None = None,
    pool: WorkerPool | None = None,
) -> None:
    """One measured run of open or closed loop against a running server, into ``result``.
    ``more_server_pids``: the server's other processes (scale-out), whose CPU and memory are
    added to the first's. ``during``: run beside the load from the start signal (given its
    time), awaited before the run ends (a broker fault). ``pool``: workers already started
    (``spawned_pool``), given their plans here; closed here either way."""
    mode = modes.get(spec.mode)
    if pool is None:
        pool = spawned_pool(spec, pinning, log_dir)
    try:
        pool.plans = worker_plans(spec, url)
    except UsageError as exc:  # the target's limit changed since the command was checked
        await pool.close()
        raise RunFailed(str(exc)) from exc
    sampler: ProcessSampler | None = None
    side: asyncio.Future[None] | None = None
    try:
        result.connect_s = await pool.spawn_and_connect()
        roles = {f"worker-{i}": pid for i, pid in enumerate(pool.pids) if pool.samples_locally}
        if server_pid is not None:
            roles["server"] = server_pid
        roles.update({f"server-{k}": pid for k, pid in enumerate(more_server_pids, start=1)})
        sampler = ProcessSampler(
            roles, uss_roles=frozenset({"server"}) if mode.uss else frozenset()
        )
        sampler.start()
        start_ns = await pool.go()
        if during is not None:
            side = asyncio.ensure_future(during(start_ns))
        window_start = start_ns + int(spec.warmup_s * 1e9)
        window_end = window_start + int(spec.duration_s * 1e9)
        result.reports = await pool.reports()
        if side is not None:
            await side
        reported_ns = monotonic_ns()
        if mode.window is not None:
            window_start, window_end = mode.window(spec, result, start_ns, reported_ns)
        result.window_s = (window_start, window_end)
        await sampler.stop()
        if mode.sample is not None:
            mode.sample(spec, result, sampler, start_ns, reported_ns, server_pid)
        record_steal(result, sampler, pinning, window_start, window_end)
        if server_pid is not None:
            result.server_worker_usage = [
                sampler.usage(f"server-{k}" if k else "server", window_start, window_end)
                for k in range(1 + len(more_server_pids))
            ]
            result.server_usage = summed_usage(result.server_worker_usage)
        result.client_usage = pool.shard_usage or [
            sampler.usage(f"worker-{i}", window_start, window_end) for i in range(spec.workers)
        ]
    finally:
        if side is not None and not side.done():
            side.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await side
        if sampler is not None:
            with contextlib.suppress(Exception):
                await sampler.stop()
        await pool.close()


# Broker faults: the broker is killed this far into the measured window, and started again on
# the same port this long after.
BROKER_FAULT_AT = 0.25
BROKER_DOWN_S = 1.0


async def inject_broker_fault(
    spec: RunSpec, group: ServerGroup, result: RunResult, start_ns: int
) -> None:
    """SIGKILL the group's redis-server (its clients get no goodbye), then start it again on
    the same port; the times go into ``result``. RunFailed when it does not come back."""
    assert group.redis is not None
    kill_ns = start_ns + int((spec.warmup_s + BROKER_FAULT_AT * spec.duration_s) * 1e9)
    await asyncio.sleep(max(0.0, (kill_ns - monotonic_ns()) / 1e9))
    result.broker_killed_ns = monotonic_ns()
    await group.redis.kill()
    await asyncio.sleep(BROKER_DOWN_S)
    try:
        await group.redis.start(group.redis.port)
    except BrokerFailed as exc:
        raise RunFailed(f"the broker did not come back after its fault: {exc}") from exc
    result.broker_restarted_ns = monotonic_ns()


def record_steal(
    result: RunResult, sampler: ProcessSampler, pinning: Pinning, start_ns: int, end_ns: int
) -> None:
    result.server_cpus_steal_pct = sampler.steal_pct(pinning.server_cpus, start_ns, end_ns)
    result.generator_cpus_steal_pct = sampler.steal_pct(pinning.generator_cpus, start_ns, end_ns)


@dataclass(frozen=True)
class SoloMeasurement:
    """One worker process against a running server, and both processes' CPU meanwhile."""

    answer: dict[str, Any]
    client: WindowUsage
    server: WindowUsage


async def measure_solo(
    module: str, plan: WorkerPlan, server_pid: int, pinning: Pinning, log_dir: Path
) -> SoloMeasurement:
    """Run ``module`` (a worker or the reference client) once, sampled (calibrate, overhead)."""
    pool = WorkerPool([plan], frozenset(pinning.generator_cpus), log_dir, module=module)
    try:
        await pool.spawn_and_connect()
        sampler = ProcessSampler({"client": pool.pids[0], "server": server_pid})
        sampler.start()
        start_ns = await pool.go()
        (answer,) = await pool.raw_reports()
        await sampler.stop()
    finally:
        await pool.close()
    window_start = start_ns + int(plan.warmup_s * 1e9)
    window_end = window_start + int(plan.duration_s * 1e9)
    return SoloMeasurement(
        answer,
        sampler.usage("client", window_start, window_end),
        sampler.usage("server", window_start, window_end),
    )


async def prepare_target(
    spec: RunSpec, pinning: Pinning, log_dir: Path, result: RunResult
) -> tuple[ManagedServer | None, str, int | None]:
    """Start the cell's server (unless it is someone else's) and probe its fairness; returns
    the server, the URL to load and the PID to sample. The server is returned started even
    when the probe then fails (as ``RunFailed``), so the caller can stop it."""
    server: ManagedServer | None = None
    if spec.started_here:
        if spec.server_cmd:
            server = UserServer(
                spec.server, spec.server_cmd, frozenset(pinning.server_cpus),
                log_dir / "server.log", spec.ready_timeout_s,
            )  # fmt: skip
            wrap = modes.get(spec.mode).server_wrapper
            if wrap is not None:
                server.wrap = wrap(spec, log_dir, False)
        elif spec.server_workers > 1:
            server = ServerGroup(
                spec.server, spec.loop, frozenset(pinning.server_cpus), log_dir / "server.log",
                spec.server_workers, spec.redis_url, transports=server_transports(spec),
                handicap_us=spec.handicap_us,
            )  # fmt: skip
        else:
            server = ManagedServer(
                spec.server, spec.loop, frozenset(pinning.server_cpus), log_dir / "server.log",
                transports=server_transports(spec), handicap_us=spec.handicap_us,
            )  # fmt: skip
        server.handicap_loops = spec.handicap_loops
        certificates = None
        if spec.tls:
            (log_dir / "tls").mkdir(parents=True, exist_ok=True)
            certificates = make_certificates(log_dir / "tls")
        server.tier_args = tier_arguments(spec, certificates)
        wrap = modes.get(spec.mode).server_wrapper
        if wrap is not None:
            server.wrap = wrap(spec, log_dir, True)
        try:
            await server.start()
        except BaseException:
            await server.stop()
            raise
        if isinstance(server, ServerGroup):
            result.broker_version = server.broker_version
        scheme = "wss" if spec.tls else "ws"
        url = websocket_url(f"{scheme}://{LOOPBACK}:{server.port}/", spec.protocol)
        server_pid: int | None = server.sampled_pid
    else:
        assert spec.target_url is not None
        url = websocket_url(spec.target_url, spec.protocol, spec.allow_network)
        server_pid = spec.server_pid
    if spec.transport == "polling":
        # The probe offers compression in a WebSocket handshake, which a polling-only server
        # refuses; the polling client asks for identity encoding instead (no gzip).
        return server, url, server_pid
    context = (
        client_context(Path(spec.tls_ca) if spec.tls_ca else None, spec.tls_insecure)
        if url.startswith("wss://")
        else None
    )
    try:
        result.probe = await fairness.probe(url, spec.protocol, ssl_context=context)
    except fairness.ProbeRefused as exc:
        raise TargetFailed(server, str(exc)) from exc
    except Exception as exc:
        raise TargetFailed(
            server, f"cannot open a WebSocket to {url}: {exc or type(exc).__name__}"
        ) from exc
    # The shipped tier records what the server negotiates instead of refusing it.
    broken = fairness.violations(result.probe) if spec.tier != SHIPPED else []
    if broken and spec.managed:
        raise TargetFailed(
            server, f"fairness contract broken by {spec.server}: {'; '.join(broken)}"
        )
    return server, url, server_pid


class TargetFailed(RunFailed):
    """The target could not be used; carries the started server so that it gets stopped."""

    def __init__(self, server: ManagedServer | None, message: str) -> None:
        super().__init__(message)
        self.server = server


def _record_internal_error(result: RunResult, log_dir: Path, exc: Exception) -> None:
    """A bug of ours: recorded against the cell (traceback in its log folder)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "harness-error.log").write_text(traceback.format_exc())
    result.status = "failed"
    result.failure = f"internal error {exc!r} (traceback in {log_dir / 'harness-error.log'})"


async def _stop_server(server: ManagedServer, result: RunResult) -> None:
    was_running = server.alive()
    result.server_exit_status = await server.stop()
    # Our servers leave on SIGTERM at once (servers.common); one that had to be killed after
    # the grace period was not running its event loop: hung (a deadlock, a blocked loop, a
    # stopped process). With errors in the row (echoes that never came, in the window or in
    # the warm-up), that is why, and the row says so.
    errors = sum(report.errors for report in result.reports)
    hung = was_running and result.server_exit_status == -signal.SIGKILL
    if hung and errors and result.status == "ok":
        result.status = "failed"
        result.failure = (
            f"server {server.name} stopped answering during the run ({errors:,} errors) and "
            f"ignored SIGTERM for {STOP_GRACE_S:.0f} s, so it was killed "
            f"({server.exit_description()})"
        )
    samples = server.loop_lag_samples()
    result.server_loop_lag_p99_ms, result.server_loop_lag_max_ms = looplag.lag_ms_in_window(
        samples, *result.window_s
    )


async def run_cell(spec: RunSpec, run_id: str, out_dir: Path, pinning: Pinning) -> RunResult:
    """Run one cell; failures are returned as a result with status "failed", never raised."""
    log_dir = out_dir / "logs" / run_id
    spec = with_run_certificates(spec, log_dir)
    result = RunResult(spec, run_id, datetime.now(UTC).isoformat(timespec="seconds"))
    server: ManagedServer | None = None
    # The workers start on the generator's cores while the server starts on its own.
    # (A mode that measures in its own way, capacity's search or a reconnect storm, starts
    # its own.)
    mode = modes.get(spec.mode)
    pool = spawned_pool(spec, pinning, log_dir) if mode.run is None else None
    spawning = asyncio.ensure_future(pool.spawn()) if pool is not None else None
    try:
        try:
            server, url, server_pid = await prepare_target(spec, pinning, log_dir, result)
        except TargetFailed as exc:
            server = exc.server
            raise
        if spawning is not None:
            await spawning
        if mode.run is not None:
            await mode.run(spec, url, server, server_pid, pinning, log_dir, result)
        else:
            more = server.more_sampled_pids if server is not None else []
            fault = None
            if spec.broker_fault:
                if not isinstance(server, ServerGroup) or server.redis is None:
                    raise RunFailed("a broker fault needs the harness's own redis-server")
                group = server

                async def fault(start_ns: int) -> None:
                    await inject_broker_fault(spec, group, result, start_ns)

            await measure(spec, url, server_pid, pinning, log_dir, result, more, fault, pool)
        if spec.broker_fault and isinstance(server, ServerGroup) and server.members:
            # A process that the broker's death took down is what this scenario measures
            # (node-socketio's Redis adapter leaves a failed publish unhandled, and Node ends
            # the process): named in the row, with its receivers' losses, not a failed cell.
            # All of them gone is a failed cell still.
            result.exited_workers = server.exited_members()
            if len(result.exited_workers) == len(server.members):
                raise RunFailed(
                    f"every server process exited during the run ({server.exit_description()})"
                )
        elif server is not None and not server.alive():
            raise RunFailed(
                f"server {spec.server} exited during the run ({server.exit_description()})"
            )
        failure = mode.check_result(spec, result) if mode.check_result is not None else ""
        if failure:
            raise RunFailed(failure)
    except RunFailed as exc:
        result.status, result.failure = "failed", str(exc)
    except Exception as exc:  # keep the suite going
        _record_internal_error(result, log_dir, exc)
    finally:
        if spawning is not None and not spawning.done():
            spawning.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await spawning
        if pool is not None:
            await pool.close()  # a second close (after measure's) stops nothing twice
        if server is not None:
            await _stop_server(server, result)
    return result


@dataclass
class _Slot:
    """One server of a time-sliced run, once started and probed."""

    spec: RunSpec
    result: RunResult
    server: ManagedServer
    url: str
    log_dir: Path
    pool: WorkerPool


async def measure_sliced(slots: list[_Slot], pinning: Pinning) -> None:
    """All slots' workers connect, start together, and load their servers in turn."""
    pools: list[WorkerPool] = []
    plans: list[WorkerPlan] = []
    for index, slot in enumerate(slots):
        try:
            slot_plans = worker_plans(slot.spec, slot.url)
        except UsageError as exc:
            raise RunFailed(str(exc)) from exc
        spec = slot.spec
        # The slice order is shuffled per round; the seed (the pass) makes it reproducible.
        slot_plans = [
            replace(p, slot=index, slots=len(slots), slice_s=spec.slice_s, slice_seed=spec.repeat)
            for p in slot_plans
        ]
        plans.append(slot_plans[0])
        slot.pool.plans = slot_plans
        pools.append(slot.pool)
    sampler: ProcessSampler | None = None
    try:
        connect_times = await asyncio.gather(*(pool.spawn_and_connect() for pool in pools))
        roles: dict[str, int] = {}
        for index, (slot, pool) in enumerate(zip(slots, pools, strict=True)):
            slot.result.connect_s = connect_times[index]
            assert slot.server.process is not None
            roles[f"server-{index}"] = slot.server.process.pid
            roles.update({f"worker-{index}-{i}": pid for i, pid in enumerate(pool.pids)})
        sampler = ProcessSampler(roles)
        sampler.start()
        start_ns = monotonic_ns() + int(START_DELAY_S * 1e9)
        await asyncio.gather(*(pool.go(start_ns) for pool in pools))
        reports = await asyncio.gather(*(pool.reports() for pool in pools))
        await sampler.stop()
        for index, slot in enumerate(slots):
            schedule = plans[index].slices()
            assert schedule is not None
            window = schedule.window(start_ns)
            active = schedule.active_fraction()
            slot.result.reports = reports[index]
            slot.result.window_s = window
            record_steal(slot.result, sampler, pinning, *window)
            # CPU while this slot was loaded: its window also holds the other slots' slices.
            slot.result.server_usage = sampler.usage(f"server-{index}", *window).per_active(active)
            slot.result.client_usage = [
                sampler.usage(f"worker-{index}-{i}", *window).per_active(active)
                for i in range(slot.spec.workers)
            ]
    finally:
        if sampler is not None:
            with contextlib.suppress(Exception):
                await sampler.stop()
        await asyncio.gather(*(pool.close() for pool in pools))


async def run_sliced(
    specs: list[RunSpec], run_ids: list[str], out_dir: Path, pinning: Pinning
) -> list[RunResult]:
    """Run cells that differ only in their server together, time-sliced (bench.load.slices).
    A server that fails to start or to pass the fairness probe fails its own cell; the others
    run without it. Failures are returned, never raised; every server is stopped."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    specs = [
        with_run_certificates(spec, out_dir / "logs" / run_id)
        for spec, run_id in zip(specs, run_ids, strict=True)
    ]
    results = [
        RunResult(spec, run_id, started) for spec, run_id in zip(specs, run_ids, strict=True)
    ]
    servers: list[tuple[ManagedServer, RunResult]] = []
    # Every slot's workers start on the generator's cores while the servers start.
    pools = [
        spawned_pool(spec, pinning, out_dir / "logs" / result.run_id)
        for spec, result in zip(specs, results, strict=True)
    ]

    async def start_one(spec: RunSpec, result: RunResult, pool: WorkerPool) -> _Slot | None:
        log_dir = out_dir / "logs" / result.run_id
        try:
            server, url, _ = await prepare_target(spec, pinning, log_dir, result)
        except TargetFailed as exc:
            if exc.server is not None:
                servers.append((exc.server, result))
            result.status, result.failure = "failed", str(exc)
            return None
        except RunFailed as exc:
            result.status, result.failure = "failed", str(exc)
            return None
        assert server is not None
        servers.append((server, result))
        return _Slot(spec, result, server, url, log_dir, pool)

    try:
        # Started and probed together: the servers wait for their turn anyway.
        started_slots, _ = await asyncio.gather(
            asyncio.gather(
                *(start_one(spec, result, pool)
                  for spec, result, pool in zip(specs, results, pools, strict=True))
            ),
            # (A failed start shows again, as the cell's failure, when the pass connects.)
            asyncio.gather(*(pool.spawn() for pool in pools), return_exceptions=True),
        )  # fmt: skip
        slots = [slot for slot in started_slots if slot is not None]
        if slots:
            try:
                await measure_sliced(slots, pinning)
            except RunFailed as exc:
                for slot in slots:
                    slot.result.status, slot.result.failure = "failed", str(exc)
            except Exception as exc:  # keep the suite going
                for slot in slots:
                    _record_internal_error(slot.result, slot.log_dir, exc)
            for slot in slots:
                if slot.result.status == "ok" and not slot.server.alive():
                    slot.result.status = "failed"
                    slot.result.failure = (
                        f"server {slot.spec.server} exited during the run "
                        f"({slot.server.exit_description()})"
                    )
    finally:
        await asyncio.gather(*(pool.close() for pool in pools))
        await asyncio.gather(*(_stop_server(server, result) for server, result in servers))
    return results
