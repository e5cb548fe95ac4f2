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

Only ``local:N`` is built: a LocalCluster on loopback, started for the run and closed after it.
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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import RunFailed, UsageError
from bench.load.coordinator import GRACE_S, WorkerPool
from bench.load.plan import WorkerPlan
from bench.processes import child_environment, python_argv, repo_root

MAX_LOCAL_SHARDS = 16
# How often the coordinator asks the scheduler whether each shard's worker is still there.
LIVENESS_POLL_S = 0.5
CLUSTER_START_TIMEOUT_S = 60.0
# A shard's first line (its child's pid) must come within this: the Dask task has started and
# the child interpreter is running.
SHARD_START_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def parse_cluster(option: str, value: str) -> int:
    """``local:N`` -> N; anything else one clear line (UsageError)."""
    if value.startswith(("tcp://", "tls://")):
        raise UsageError(
            f"{option} {value}: an existing Dask scheduler is not supported yet; "
            "use local:N (a LocalCluster on this machine)"
        )
    kind, _, count = value.partition(":")
    if kind != "local" or not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_SHARDS:
        raise UsageError(
            f"{option} {value!r}: expected local:N with N from 1 to {MAX_LOCAL_SHARDS}"
        )
    return int(count)


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


def relay_shard(module: str, cpus: list[int], in_name: str, out_name: str, log: str) -> int:
    """The Dask task: run ``module`` as a child and relay its stdin and stdout lines through
    the queues ``in_name`` and ``out_name``; returns the child's exit status. The first line
    out names the child's pid and host; ``""`` out means the child's stdout ended; ``None`` in
    (or the child's exit) ends the relay."""
    from distributed import Queue as _Queue

    queue: Any = _Queue  # distributed is untyped
    inbox, outbox = queue(in_name), queue(out_name)
    env = child_environment()
    with open(log, "ab") as stderr:
        child = subprocess.Popen(
            python_argv(module), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            cwd=repo_root(), env=env, preexec_fn=_die_with_parent,
        )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    if cpus:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(child.pid, cpus)
    outbox.put(json.dumps({"event": "shard", "pid": child.pid, "host": socket.gethostname()}))
    stdout = child.stdout

    def pump() -> None:
        for line in stdout:
            outbox.put(line.decode())
        outbox.put("")

    pumping = threading.Thread(target=pump, name="wsbench-shard-out", daemon=True)
    pumping.start()
    try:
        # No timeout on the wait (a timed-out get is logged as an error by the scheduler):
        # the coordinator always ends a shard with None, also when its generator exited, and
        # if the coordinator dies its LocalCluster, this worker and the child go with it.
        while True:
            line = inbox.get()
            if line is None or child.poll() is not None:
                break
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
    """A LocalCluster on loopback for one ``wsbench run`` and its asynchronous client."""

    shards: int
    # distributed is untyped: its LocalCluster and asynchronous Client.
    cluster: Any = None
    client: Any = None
    addresses: tuple[str, ...] = ()

    async def start(self) -> None:
        # Dask's own warnings (a nanny restarting a worker that died) would interleave with
        # the progress lines; what they report, the cell's failure names. Workers read the
        # variable when they import dask.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        logging.getLogger("distributed").setLevel(logging.ERROR)
        import distributed

        dask: Any = distributed
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
        return {"kind": "local", "shards": self.shards, "workers": list(self.addresses)}

    async def close(self) -> None:
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
async def running_cluster(shards: int) -> Any:
    global _active
    cluster = DaskCluster(shards)
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
                    sorted(self.cpus),
                    in_name,
                    out_name,
                    str(self.log_dir.resolve() / f"worker-{index}.log"),
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                    key=f"wsbench-shard-{self.run}-{index}",
                )
            )
        firsts = await asyncio.gather(*(self._first_line(i) for i in range(len(self.futures))))
        self.shard_pids = [int(f["pid"]) for f in firsts]
        self.hosts = [str(f["host"]) for f in firsts]

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
