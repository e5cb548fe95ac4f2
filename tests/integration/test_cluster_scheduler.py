"""Issue 21: ``--cluster tcp://HOST:PORT``, a Dask scheduler and workers someone else runs
(here: the test, with ``dask scheduler`` and ``dask worker`` on loopback). One shard per
worker; the start goes as a delay each relay turns into its own clock; each shard's CPU is read
on its own host by its relay; every worker's host is stamped in meta.json; a scheduler that
does not answer is one line, exit 2, within its timeout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TIME_FACTOR

pytestmark = pytest.mark.integration
pytest.importorskip("distributed", reason="pip install 'wsbench[cluster]'")

RUN_TIMEOUT_S = 300.0 * TIME_FACTOR
START_TIMEOUT_S = 60.0 * TIME_FACTOR
WORKERS = 2


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler on a free loopback port and WORKERS single-threaded workers, stopped
    whatever happens; yields its address."""
    folder = tmp_path_factory.mktemp("dask")
    address_file = folder / "scheduler.json"
    log = (folder / "dask.log").open("wb")
    processes = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)],
        stdout=log, stderr=log,
    )]  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        for _ in range(WORKERS):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
                 "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
                stdout=log, stderr=log, cwd=REPO_ROOT,
            ))  # fmt: skip
        yield address
    finally:
        for process in reversed(processes):
            stop(process)
        log.close()


def wsbench(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "run", *options], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip


def test_one_shard_runs_on_each_worker_of_the_scheduler(scheduler: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = wsbench(
        "--cluster",
        scheduler,
        "--servers",
        "websockets",
        "--mode",
        "closed",
        "--connections",
        "20",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "runs.csv", newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert (row["status"], row["errors"], row["cluster"]) == ("ok", "0", scheduler), row["failure"]
    received = [int(pair.split(":")[1]) for pair in row["received_per_worker"].split()]
    assert len(received) == WORKERS and sum(received) == int(row["received"]) > 0
    # Read by each shard's relay on its host: a share of a core, one per shard.
    cpu = [float(pair.split(":")[1]) for pair in row["client_cpu_pct_per_worker"].split()]
    assert len(cpu) == WORKERS and all(0 < c <= 105 for c in cpu), cpu
    meta = json.loads((out / "meta.json").read_text())
    cluster = meta["cluster"]
    assert (cluster["kind"], cluster["scheduler"], cluster["shards"]) == (
        "scheduler", scheduler, WORKERS,
    )  # fmt: skip
    assert len(cluster["hosts"]) == WORKERS
    for stamp in cluster["hosts"].values():
        assert stamp["cpu_model"] == meta["machine"]["cpu_model"] and stamp["packages"]["picows"]


def test_a_scheduler_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    # A port nothing listens on: a free one, taken and given back.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = wsbench("--cluster", f"tcp://127.0.0.1:{port}", "--servers", "websockets",
                   "--mode", "closed", "--duration", "1", "--out", str(tmp_path / "x"))  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "no Dask scheduler answered" in done.stderr
    assert time.monotonic() - started < 60
