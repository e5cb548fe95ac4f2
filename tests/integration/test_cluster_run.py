"""Issue 21: the generator as Dask shards (``--cluster local:N``), end to end on loopback: the
rows' counts are the shards' sums, and a Dask worker killed mid-run fails its cell, named, while
the suite goes on."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.errors import EXIT_RUN_FAILED
from tests.conftest import REPO_ROOT, TIME_FACTOR

pytestmark = pytest.mark.integration
pytest.importorskip("distributed", reason="pip install 'wsbench[cluster]'")

RUN_TIMEOUT_S = 300.0 * TIME_FACTOR


def wsbench(out: Path, *options: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench", "run", "--cluster", "local:2", "--mode", "closed",
            "--connections", "20", "--out", str(out), *options]  # fmt: skip
    return subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "runs.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def per_worker(text: str) -> list[int]:
    pairs = [pair.split(":") for pair in text.split()]
    assert [int(k) for k, _ in pairs] == list(range(len(pairs)))
    return [int(v) for _, v in pairs]


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


def test_the_rows_are_the_sums_of_the_shards(tmp_path: Path) -> None:
    process = wsbench(tmp_path, "--servers", "websockets,socketio-aiohttp",
                      "--duration", "3", "--warmup", "1")  # fmt: skip
    status, stderr = finish(process)
    assert status == 0, stderr
    found = rows(tmp_path)
    assert [r["server"] for r in found] == ["websockets", "socketio-aiohttp"]
    for row in found:
        assert (row["status"], row["errors"]) == ("ok", "0"), row["failure"]
        assert (row["cluster"], row["workers"]) == ("local:2", "2")
        sent, received = per_worker(row["sent_per_worker"]), per_worker(row["received_per_worker"])
        assert len(sent) == len(received) == 2 and min(received) > 0
        assert (sum(sent), sum(received)) == (int(row["sent"]), int(row["received"]))
        assert len(per_worker(row["client_cpu_pct_per_worker"].replace(".", ""))) == 2
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["cluster"]["kind"] == "local" and meta["cluster"]["shards"] == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in meta["cluster"]["workers"])
    # Every process it started is gone: the Dask workers and the shards' generators.
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or [])]  # fmt: skip


def shard_parents(harness: psutil.Process) -> list[psutil.Process]:
    """The Dask workers running a shard: parents of a generator (``-m bench.load.worker``)
    that is not the harness's own child (its calibration's)."""
    found = []
    for child in harness.children(recursive=True):
        try:
            cmdline = child.cmdline()
            parent = child.parent()
        except psutil.Error:
            continue
        if "bench.load.worker" in cmdline and parent is not None and parent.pid != harness.pid:
            found.append(parent)
    return found


def test_a_killed_dask_worker_fails_its_cell_by_name_and_the_suite_goes_on(
    tmp_path: Path,
) -> None:
    process = wsbench(tmp_path, "--servers", "websockets,aiohttp",
                      "--duration", "20", "--warmup", "1")  # fmt: skip
    try:
        harness = psutil.Process(process.pid)
        deadline = time.monotonic() + 120.0 * TIME_FACTOR
        victims: list[psutil.Process] = []
        while not victims and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            victims = shard_parents(harness)
        assert victims, "no shard started"
        time.sleep(2.0)  # into the measured window
        started_ns = time.monotonic_ns()
        victims[0].send_signal(signal.SIGKILL)
    finally:
        status, stderr = finish(process)
    assert status == EXIT_RUN_FAILED, stderr
    first, second = rows(tmp_path)
    assert first["status"] == "failed"
    assert "Dask worker tcp://127.0.0.1:" in first["failure"], first["failure"]
    assert (second["server"], second["status"], second["errors"]) == ("aiohttp", "ok", "0")
    # The failure came well before the 20 s cell would have ended.
    assert (time.monotonic_ns() - started_ns) / 1e9 < 20.0 + 40.0 * TIME_FACTOR
