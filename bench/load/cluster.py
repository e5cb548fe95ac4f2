"""Generator shards as Dask distributed tasks: ``--cluster local:N``.

Each shard is one Dask task, placed on one Dask worker (``workers=[address]``, no other
allowed), that starts the harness's own worker entry (``python -m bench.load.worker``) as a
child process and relays its lines both ways through two named ``distributed.Queue``s. The
shard therefore runs exactly the code ``--workers`` runs, in a process and event loop of its
own, pinned to the generator's cores: a plain function running ``asyncio.run`` inside the Dask
worker would share that process with Dask's own event loop, threads and heartbeats, and its
measurements would carry them. The coordinator's side (``DaskPool``) is ``WorkerPool`` with the
pipes replaced by the queues, so the start (every shard connected, then one GO), the deadlines
and the merging are the ones ``--workers`` has.

A shard whose Dask worker dies is noticed within ``LIVENESS_POLL_S`` (its address leaves the
scheduler) and fails the cell naming that address; a shard that hangs fails at the phase's
deadline, named. The child dies with its Dask worker (PR_SET_PDEATHSIG) and is stopped when the
task ends, so no generator outlives a run.

``local:N`` starts a LocalCluster on loopback for the run and closes it after. ``tcp://HOST:PORT``
uses a scheduler someone else runs (``dask scheduler``, ``dask worker``; dask-ssh, Kubernetes)
and closes only its own client: one shard on each of its workers (or on ``--workers`` of them).
Its workers may be other machines, so for them the harness assumes nothing of this one: the
start signal goes as a delay that each shard's relay turns into its own clock's time (the
queue's transit, milliseconds, offsets a shard's window within the warm-up), the relay samples
its child's CPU and memory over the shard's own window on its own host (a pid means nothing on
the coordinator's), shards are not pinned (the harness does not know those machines' cores),
and each worker's host, CPU, Python and generator libraries are stamped in meta.json. A shard
on another host cannot reach this machine's loopback: such a cell fails, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.errors import RunFailed, UsageError
from bench.load.coordinator import GRACE_S, WorkerPool
from bench.load.plan import WorkerPlan, WorkerReport
from bench.metrics.sampling import WindowUsage
from bench.processes import child_environment, python_argv, repo_root
from bench.target import is_loopback, refuse_unless_allowed

MAX_LOCAL_SHARDS = 16
# A scheduler someone else runs must answer within this (when the command is checked, and
# when the run connects).
SCHEDULER_TIMEOUT_S = 10.0
# The start signal to shards on other hosts: this long after it reaches each (queue transit
# is milliseconds on a LAN; each shard's window starts after its warm-up either way).
REMOTE_START_DELAY_S = 0.5
# How often the coordinator asks the scheduler whether each shard's worker is still there.
LIVENESS_POLL_S = 0.5
CLUSTER_START_TIMEOUT_S = 60.0
# A shard's first line (its child's pid) must come within this: the Dask task has started and
# the child interpreter is running.
SHARD_START_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ClusterChoice:
    """What ``--cluster`` names: ``local:N`` (``local_shards`` N) or a scheduler's address."""

    local_shards: int = 0
    scheduler: str = ""


def parse_cluster(option: str, value: str, networks: tuple[str, ...] = ()) -> ClusterChoice:
    """``local:N`` or ``tcp://HOST:PORT`` (HOST on loopback or in ``networks``, from
    --allow-network); anything else one clear line (UsageError)."""
    if value.startswith("tls://"):
        raise UsageError(f"{option} {value}: TLS to a Dask scheduler is not supported; tcp://")
    if value.startswith("tcp://"):
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise UsageError(f"{option} {value!r}: expected tcp://HOST:PORT (a Dask scheduler)")
        refuse_unless_allowed(f"{option} scheduler", parts.hostname, networks)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return ClusterChoice(scheduler=f"tcp://{host}:{port}")
    kind, _, count = value.partition(":")
    if kind != "local" or not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_SHARDS:
        raise UsageError(
            f"{option} {value!r}: expected local:N with N from 1 to {MAX_LOCAL_SHARDS}, or "
            "tcp://HOST:PORT"
        )
    return ClusterChoice(local_shards=int(count))


def _distributed() -> Any:
    """Dask distributed (untyped), its log quiet: its own warnings (a nanny restarting a
    worker that died) would interleave with the progress lines, and what they report the
    cell's failure names. LocalCluster workers read the variable when they import dask."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import distributed

    return distributed


def scheduler_workers(address: str, timeout_s: float = SCHEDULER_TIMEOUT_S) -> int:
    """How many workers the scheduler at ``address`` has now; one line (UsageError) when it
    does not answer within ``timeout_s`` or has none."""
    dask = _distributed()
    try:
        with dask.Client(address, timeout=timeout_s) as client:
            workers = len(client.scheduler_info()["workers"])
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"--cluster {address}: no Dask scheduler answered within {timeout_s:g} s ({exc})"
        ) from None
    if workers == 0:
        raise UsageError(f"--cluster {address}: the scheduler has no workers")
    return workers


def distributed_missing() -> str:
    """One line naming what to install when Dask distributed is not importable, else ""."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return "--cluster needs Dask distributed: pip install 'wsbench[cluster]' (or distributed)"
    return ""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# The generator's own libraries, stamped per shard host (the servers' are this machine's).
GENERATOR_PACKAGES = ("picows", "uvloop", "hdrhistogram", "numpy", "psutil", "distributed")
# A remote shard's relay reads its child's memory this often inside the window.
RSS_EVERY_S = 0.25


def shard_stamp() -> dict[str, Any]:
    """The host a shard runs on, for meta.json: the fields ``compare`` and the gate weigh."""
    import platform

    from bench.metrics import environment as here

    return {
        "host": socket.gethostname(), "cpu_model": here.cpu_model(),
        "cpu_flags_sha256": here.cpu_flags_digest(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "packages": here.distribution_versions(GENERATOR_PACKAGES),
        "harness": here.git_state(repo_root()),
    }  # fmt: skip


class _WindowUsage:
    """A remote shard's CPU (of one core, percent) and peak RSS over its own window, read on
    its own host by its relay: the coordinator's sampler sees only its own machine."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.done = threading.Event()
        self.cpu_pct = float("nan")
        self.rss_max_bytes = 0

    def _cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def watch(self, window_start_s: float, window_end_s: float) -> None:
        """On a thread: sleep to the window's start (time.monotonic), read, sample RSS to its
        end, read again."""
        try:
            time.sleep(max(0.0, window_start_s - time.monotonic()))
            started, cpu_started = time.monotonic(), self._cpu_s()
            while time.monotonic() < window_end_s:
                self.rss_max_bytes = max(self.rss_max_bytes, self.process.memory_info().rss)
                time.sleep(min(RSS_EVERY_S, max(0.0, window_end_s - time.monotonic())))
            ended, cpu_ended = time.monotonic(), self._cpu_s()
            if ended > started:
                self.cpu_pct = 100 * (cpu_ended - cpu_started) / (ended - started)
        except psutil.Error:  # the child exited: nothing to add to its report
            pass
        finally:
            self.done.set()


def relay_shard(
    module: str, cpus: list[int], in_name: str, out_name: str, log: str, remote: bool = False
) -> int:
    """The Dask task: run ``module`` as a child and relay its stdin and stdout lines through
    the queues ``in_name`` and ``out_name``; returns the child's exit status. The first line
    out names the child's pid and host; ``""`` out means the child's stdout
    ended; ``None`` in (or the child's exit) ends the relay. ``remote``: the start comes as
    ``GO+ <delay_ns>``, turned into this host's clock, and the child's report gains
    ``shard_cpu_pct`` and ``shard_rss_max_bytes`` over its window (``_WindowUsage``)."""
    from distributed import Queue as _Queue

    queue: Any = _Queue  # distributed is untyped
    inbox, outbox = queue(in_name), queue(out_name)
    env = child_environment()
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)  # on another host, too
    with open(log, "ab") as stderr:
        child = subprocess.Popen(
            python_argv(module), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            cwd=repo_root(), env=env, preexec_fn=_die_with_parent,
        )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    if cpus:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(child.pid, cpus)
    # The host's full stamp was taken once, when the cluster started (DaskCluster.start).
    outbox.put(json.dumps({"event": "shard", "pid": child.pid, "host": socket.gethostname()}))
    stdout = child.stdout
    usage = _WindowUsage(child.pid) if remote else None

    def pump() -> None:
        for line in stdout:
            text = line.decode()
            if usage is not None and '"event": "report"' in text:
                usage.done.wait(5.0)
                report = json.loads(text)
                report["shard_cpu_pct"], report["shard_rss_max_bytes"] = (
                    usage.cpu_pct, usage.rss_max_bytes,
                )  # fmt: skip
                text = json.dumps(report) + "\n"
            outbox.put(text)
        outbox.put("")

    pumping = threading.Thread(target=pump, name="wsbench-shard-out", daemon=True)
    pumping.start()
    window = (0.0, 0.0)
    try:
        # No timeout on the wait (a timed-out get is logged as an error by the scheduler):
        # the coordinator always ends a shard with None, also when its generator exited, and
        # if the coordinator dies its LocalCluster, this worker and the child go with it.
        while True:
            line = inbox.get()
            if line is None or child.poll() is not None:
                break
            if usage is not None and line.startswith("{") and window == (0.0, 0.0):
                plan = json.loads(line)  # the plan: the window's length
                window = (float(plan["warmup_s"]), float(plan["duration_s"]))
            if usage is not None and line.startswith("GO+ "):
                start_ns = time.monotonic_ns() + int(line.split()[1])
                line = f"GO {start_ns}"
                begin = start_ns / 1e9 + window[0]
                threading.Thread(
                    target=usage.watch, args=(begin, begin + window[1]), daemon=True,
                    name="wsbench-shard-usage",
                ).start()  # fmt: skip
            try:
                child.stdin.write(line.encode() + b"\n")
                child.stdin.flush()
            except BrokenPipeError:
                break
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(2.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        pumping.join(2.0)
    return child.returncode


@dataclass
class DaskCluster:
    """For one ``wsbench run``: a LocalCluster on loopback, or a client of the ``scheduler``
    someone else runs, and the asynchronous client."""

    shards: int
    scheduler: str = ""
    # distributed is untyped: its LocalCluster and asynchronous Client.
    cluster: Any = None
    client: Any = None
    addresses: tuple[str, ...] = ()
    # Per worker address, its host's stamp (``shard_stamp``), for meta.json.
    stamps: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        """Its workers may be other machines (a scheduler someone else runs)."""
        return bool(self.scheduler)

    async def start(self) -> None:
        if self.remote:
            await self._connect()
        else:
            await self._start_local()
        stamps = await asyncio.wait_for(self.client.run(shard_stamp), CLUSTER_START_TIMEOUT_S)
        self.stamps = dict(sorted(stamps.items()))

    async def _connect(self) -> None:
        dask = _distributed()
        try:
            self.client = await asyncio.wait_for(
                dask.Client(self.scheduler, asynchronous=True, timeout=SCHEDULER_TIMEOUT_S),
                SCHEDULER_TIMEOUT_S + 5,
            )
            await self.client.wait_for_workers(self.shards, timeout=CLUSTER_START_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            await self.close()
            raise RunFailed(
                f"the Dask scheduler {self.scheduler} did not give {self.shards} workers: {exc}"
            ) from exc
        self.addresses = tuple(sorted(await self.worker_addresses()))

    async def _start_local(self) -> None:
        dask = _distributed()
        try:
            self.cluster = await asyncio.wait_for(
                dask.LocalCluster(
                    n_workers=self.shards,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    asynchronous=True,
                ),
                CLUSTER_START_TIMEOUT_S,
            )
            self.client = await asyncio.wait_for(
                dask.Client(self.cluster, asynchronous=True), CLUSTER_START_TIMEOUT_S
            )
            await self.client.wait_for_workers(self.shards, timeout=CLUSTER_START_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            await self.close()
            raise RunFailed(f"the Dask LocalCluster did not start: {exc}") from exc
        self.addresses = tuple(sorted(await self.worker_addresses()))

    async def worker_addresses(self) -> set[str]:
        assert self.client is not None
        identity = await asyncio.wait_for(self.client.scheduler.identity(), 10.0)
        return set(identity["workers"])

    def describe(self) -> dict[str, Any]:
        kind = (
            {"kind": "scheduler", "scheduler": self.scheduler} if self.remote else {"kind": "local"}
        )
        return {**kind, "shards": self.shards, "workers": list(self.addresses),
                "hosts": self.stamps}  # fmt: skip

    async def close(self) -> None:
        """Its own client, and the LocalCluster it started (never someone else's scheduler)."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 10.0)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cluster.close(), 20.0)
        self.client = self.cluster = None


# The run's cluster, set by the suite for its length (bench.suite_run); ``spawned_pool`` reads it.
_active: DaskCluster | None = None


def active() -> DaskCluster | None:
    return _active


@contextlib.asynccontextmanager
async def running_cluster(shards: int, scheduler: str = "") -> Any:
    global _active
    cluster = DaskCluster(shards, scheduler)
    await cluster.start()
    _active = cluster
    try:
        yield cluster
    finally:
        _active = None
        await cluster.close()


class DaskPool(WorkerPool):
    """``WorkerPool`` whose workers are Dask shards: the same lines, through queues."""

    def __init__(
        self,
        plans: list[WorkerPlan],
        cpus: frozenset[int],
        log_dir: Path,
        cluster: DaskCluster,
        module: str = "bench.load.worker",
        grace_s: float = GRACE_S,
        count: int | None = None,
    ) -> None:
        super().__init__(plans, cpus, log_dir, module, grace_s, count)
        self.cluster = cluster
        self.addresses: list[str] = []
        self.run = uuid.uuid4().hex[:12]
        self.inboxes: list[Any] = []
        self.outboxes: list[Any] = []
        self.futures: list[Any] = []
        self.shard_pids: list[int] = []
        self.hosts: list[str] = []

    @property
    def pids(self) -> list[int]:
        return self.shard_pids

    @property
    def samples_locally(self) -> bool:
        return not self.cluster.remote

    async def go(self, start_ns: int | None = None) -> int:
        """Shards on other hosts get a delay, turned into their own clock by their relay."""
        if not self.cluster.remote:
            return await super().go(start_ns)
        delay_ns = int(REMOTE_START_DELAY_S * 1e9)
        for index in range(len(self.pids)):
            await self._write(index, f"GO+ {delay_ns}")
        return time.monotonic_ns() + delay_ns

    async def reports(self) -> list[WorkerReport]:
        answers = await self.raw_reports()
        if self.cluster.remote:
            self.shard_usage = [
                WindowUsage(float(a.pop("shard_cpu_pct", float("nan"))),
                            int(a.pop("shard_rss_max_bytes", 0)), 2)
                for a in answers
            ]  # fmt: skip
        return [WorkerReport.from_dict(answer) for answer in answers]

    def _name(self, index: int) -> str:
        address = self.addresses[index] if index < len(self.addresses) else "?"
        return f"generator shard {index} on Dask worker {address}"

    async def spawn(self) -> None:
        if self.futures:
            return
        from distributed import Queue as _Queue

        queue: Any = _Queue  # distributed is untyped
        client: Any = self.cluster.client
        assert client is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The workers of now: a LocalCluster's nanny replaces a worker that died (an earlier
        # cell's) under a new address.
        try:
            await client.wait_for_workers(self.count, timeout=SHARD_START_TIMEOUT_S)
        except TimeoutError as exc:
            raise RunFailed(
                f"the Dask cluster has fewer than {self.count} workers for the shards"
            ) from exc
        self.addresses = sorted(await self.cluster.worker_addresses())[: self.count]
        for index, address in enumerate(self.addresses):
            in_name, out_name = f"wsbench-{self.run}-{index}-in", f"wsbench-{self.run}-{index}-out"
            self.inboxes.append(await queue(in_name, client=client))
            self.outboxes.append(await queue(out_name, client=client))
            self.futures.append(
                client.submit(
                    relay_shard,
                    self.module,
                    [] if self.cluster.remote else sorted(self.cpus),
                    in_name,
                    out_name,
                    str(self.log_dir.resolve() / f"worker-{index}.log"),
                    self.cluster.remote,
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                    key=f"wsbench-shard-{self.run}-{index}",
                )
            )
        firsts = await asyncio.gather(*(self._first_line(i) for i in range(len(self.futures))))
        self.shard_pids = [int(f["pid"]) for f in firsts]
        self.hosts = [str(f["host"]) for f in firsts]

    async def spawn_and_connect(self) -> float:
        await self.spawn()
        # The plans are known by now (a pool may be spawned before its server has a port).
        target = urlsplit(self.plans[0].url).hostname if self.plans else None
        here = socket.gethostname()
        for index, host in enumerate(self.hosts):
            if host != here and target is not None and is_loopback(target):
                raise RunFailed(
                    f"{self._name(index)} runs on {host}, which cannot reach this machine's "
                    f"loopback ({target}): give --target a routable address and --allow-network"
                )
        return await super().spawn_and_connect()

    async def _first_line(self, index: int) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(self._readline(index), SHARD_START_TIMEOUT_S)
        except TimeoutError as exc:
            raise RunFailed(
                f"{self._name(index)} did not start within {SHARD_START_TIMEOUT_S:.0f} s"
            ) from exc
        answer: dict[str, Any] = json.loads(line)
        if answer.get("event") != "shard":
            raise RunFailed(f"{self._name(index)} said {line[:80]!r}")
        return answer

    async def _write(self, index: int, line: str) -> None:
        await asyncio.wait_for(self.inboxes[index].put(line), 10.0)

    async def _readline(self, index: int) -> bytes:
        """The shard's next line, watching its Dask worker: a worker that left the scheduler
        or a task that ended fails the run, named."""
        # One untimed get, watched (a timed-out get is logged as an error by the scheduler); a
        # get still waiting when the cell fails is dropped with the cell's queues.
        getting = asyncio.ensure_future(self.outboxes[index].get())
        try:
            while not getting.done():
                await asyncio.wait({getting}, timeout=LIVENESS_POLL_S)
                if not getting.done():
                    await self._check_alive(index)
            line = getting.result()
        finally:
            if not getting.done():
                getting.cancel()
        if line == "":
            raise RunFailed(
                f"{self._name(index)}: its generator exited "
                f"(log: {self.log_dir / f'worker-{index}.log'})"
            )
        return str(line).encode()

    async def _check_alive(self, index: int) -> None:
        future = self.futures[index]
        if future.status in ("error", "cancelled", "lost"):
            raise RunFailed(f"{self._name(index)} failed: its Dask task is {future.status}")
        if self.addresses[index] not in await self.cluster.worker_addresses():
            raise RunFailed(f"{self._name(index)}: the Dask worker left the cluster (died?)")

    async def close(self) -> None:
        for inbox in self.inboxes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(inbox.put(None), 5.0)
        for future in self.futures:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, 5.0)
            with contextlib.suppress(Exception):
                await future.cancel()
        self.futures = []
        self.inboxes, self.outboxes = [], []
